"""The tutorials' ways of writing an affine model, and their jaxreg `Params` layout.

The torch programs name and shape their parameters in several ways (`W` of shape (1,) in
`x * W + b`, `w` of shape (k,) in `torch.mv(X, w)`, `What` of shape (k, 1) in `X @ What`,
...). The jax side always uses `jr.linear.Params(weight (out, in), bias (out,) | None)`.
A `Form` maps one onto the other by reshaping only, never by arithmetic, so the numbers
compared are the numbers each side computed. Both directions accept leading axes (a
history of shape (steps, *shape)).

The data shapes differ the same way: where the torch program uses x of shape (n,) or
targets of shape (n,) (`torch.mv`, the Celsius tutorial), the jax side uses (n, 1), the
explicit shapes jaxreg requires (`jax_side.jax_shapes`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxreg.linear import Params


@dataclasses.dataclass(frozen=True)
class Form:
    """How one torch program writes its affine map.

    Attributes:
      name: the key in `FORMS`.
      code: the torch expression, for the report.
      weight: the torch name of the weight tensor.
      bias: the torch name of the bias tensor, or None.
      layout: how the weight is stored: "out_in" (nn.Linear's (out, in)), "flat" ((in,),
        one output), "col" ((in, 1), `X @ What`).
    """

    name: str
    code: str
    weight: str
    bias: str | None
    layout: str

    def to_params(self, params: dict[str, np.ndarray]):
        """{torch name: array} -> `jr.linear.Params` (a reshape, exact). NumPy in, NumPy out."""
        w = np.asarray(params[self.weight])
        if self.layout == "flat":
            w = w[..., None, :]
        elif self.layout == "col":
            w = np.swapaxes(w, -1, -2)
        bias = None if self.bias is None else np.asarray(params[self.bias])
        return Params(w, bias)

    def from_params(self, params) -> dict[str, np.ndarray]:
        """`Params` (optionally with leading axes) -> {torch name: array}, torch's shapes."""
        w = np.asarray(params.weight)
        if self.layout == "flat":
            w = w[..., 0, :]
        elif self.layout == "col":
            w = np.swapaxes(w, -1, -2)
        out = {self.weight: w}
        if self.bias is not None:
            out[self.bias] = np.asarray(params.bias)
        return out

    def names(self) -> tuple[str, ...]:
        return (self.weight,) if self.bias is None else (self.weight, self.bias)


FORMS: dict[str, Form] = {
    f.name: f
    for f in (
        Form("nn.Linear", "nn.Linear(in, out)(x)", "weight", "bias", "out_in"),
        Form("nn.Linear-nobias", "nn.Linear(in, 1, bias=False)(x)", "weight", None, "out_in"),
        Form(
            "nn.Module",
            "LinearRegressionModel(nn.Module) with self.linear",
            "weight",
            "bias",
            "out_in",
        ),
        Form("x*W+b", "x * W + b  (W, b: zeros(1))", "W", "b", "flat"),
        Form("b+w*x", "b + w * x  (optim.SGD([b, w]))", "w", "b", "flat"),
        Form("torch.mv", "torch.mv(X, w)  (w: (k,))", "w", None, "flat"),
        Form("X@What", "X @ What  (What: (k, 1))", "What", None, "col"),
        Form(
            "x*w.t()+b",
            "x * w.t() + b  (x: (n,), w: (1, 1); prediction (1, n))",
            "w",
            "b",
            "out_in",
        ),
    )
}


def line_of(form: Form, params: dict[str, np.ndarray], feature_column: int) -> tuple[float, float]:
    """(slope, intercept) of a one-feature model, for plotting the fitted line.

    `feature_column` is the column of x that holds the feature (1 for a design matrix
    `[1, x]`, whose column 0 is the intercept; 0 otherwise).
    """
    p = form.to_params(params)
    w = np.asarray(p.weight, np.float64)[0]
    intercept = float(np.asarray(p.bias, np.float64)[0]) if p.bias is not None else 0.0
    if feature_column == 1:
        intercept += float(w[0])
    return float(w[feature_column]), intercept
