"""The seed scenarios: SPEC's seven tutorial workflows, every variant, as the tutorials write them
(and t8, softmax regression, the multiclass workflow the same way).

Each workflow exists in float32 (the tutorials' dtype, `-f32`) and float64 (`-f64`: the
same program on float64 tensors, where torch and jaxreg must agree to ~1e-12). A name says
which tutorial it comes from: the workflow's number and the tutorial's short name
(`TUTORIALS`), then the variant: `t4-mv-nn-linear-mseloss-view-as-f32` is the multivariate
tutorial's `nn.Linear` + `nn.MSELoss` version. Names used before the tutorial was in every
name (`t3-lesson-grad-accumulation`) still select their scenario (`RENAMED`).

The jax side is `jr.fit` for most, and a Python loop over `jr.make_step` (the way a
hand-written torch loop is ported line by line) for t4-mv, t5a, t5c and t6-mse.

Data: the tutorials' synthetic data is generated once with NumPy from a seed
(`jaxreg.data.line/multivariate/logistic/celsius`) and handed to both sides; the real-data
workflow (t5) reads `regression.csv`. Initial parameters are the tutorials' (zeros, the
given numbers, a seeded `randn` drawn by NumPy) or torch's own `nn.Linear` init
(`TorchInit`), copied across.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxreg import data as jrdata
from parity.problem import load_regression_csv
from parity.scenario import Data, Scenario, TorchInit


def _line(slope: float):
    def build(dtype: np.dtype, path: Path) -> Data:
        d = jrdata.line(slope, dtype=dtype)
        return Data(d.x, d.y, d.x[:, 0])

    return build


def _multivariate(dtype: np.dtype, path: Path) -> Data:
    d = jrdata.multivariate(100, seed=0, dtype=dtype)
    return Data(d.x, d.y)  # X (100, 3) = [1, randn(100, 2)], y (100,)


def _w0(dtype: np.dtype) -> np.ndarray:
    return jrdata.multivariate(100, seed=0, dtype=dtype).w0  # the tutorial's randn(3)


def _real_design(dtype: np.dtype, path: Path) -> Data:
    x, y = load_regression_csv(path, dtype)
    return Data(jrdata.design_matrix(x), y[:, None], x)  # X = [1, x] (100, 2), y (100, 1)


def _real_column(dtype: np.dtype, path: Path) -> Data:
    x, y = load_regression_csv(path, dtype)
    return Data(x[:, None], y[:, None], x)  # x (100, 1), y (100, 1)


def _logistic(dtype: np.dtype, path: Path) -> Data:
    d = jrdata.logistic(2000, seed=0, dtype=dtype)
    return Data(d.x, d.y, d.x[:, 0])  # (2000, 1) each


def _celsius(dtype: np.dtype, path: Path) -> Data:
    d = jrdata.celsius(20, seed=0, dtype=dtype)
    return Data(d.x, d.y, d.x)  # (20,) each: the tutorial's 1-D tensors


def _celsius_init(name: str):
    def build(dtype: np.dtype) -> np.ndarray:
        d = jrdata.celsius(20, seed=0, dtype=dtype)
        return d.w0 if name == "w" else d.b0  # w (1, 1), b (1,)

    return build


def _softmax_blobs(dtype: np.dtype, path: Path) -> Data:
    """150 rows of 4 features around 3 class centres (an iris-sized problem, NumPy-seeded);
    y (150,) int64 class indices, as `nn.CrossEntropyLoss` takes them."""
    rng = np.random.default_rng(8)
    y = np.repeat(np.arange(3), 50)
    centres = np.array([[1.0, 1.5, -1.0, 0.0], [-1.0, 0.5, 1.0, 0.5], [0.0, -1.5, 0.0, -1.0]])
    x = centres[y] + rng.standard_normal((150, 4))
    return Data(x.astype(dtype), y.astype(np.int64))


def _no_data(dtype: np.dtype, path: Path) -> Data:
    return Data(np.zeros((1, 1)), np.zeros((1, 1)))


# workflow number -> (the tutorial's short name in every scenario name, its title in SPEC)
TUTORIALS = {
    "t1": ("line", "scalar line y = x with manual parameters W, b and optim.SGD"),
    "t2": ("line", "the same line with nn.Linear(1, 1) in an nn.Module"),
    "t3": ("line-2x", "y = 2x, and the autograd lessons of the same tutorial"),
    "t4": ("mv", "multivariate regression with a design matrix (torch.mv)"),
    "t5": ("real", "real data (regression.csv), two loss scalings"),
    "t6": ("logistic", "logistic regression, MSE and binary cross-entropy"),
    "t7": ("celsius", "Celsius to Fahrenheit"),
    "t8": ("softmax", "softmax regression, nn.Linear(4, 3) + CrossEntropyLoss"),
}

# a seed scenario's earlier name (without the dtype suffix) -> its name now
RENAMED = {
    "t3-lesson-grad-accumulation": "t3-line-2x-lesson-grad-accumulation",
    "t3-lesson-grad-2w2+5": "t3-line-2x-lesson-grad-2w2+5",
    "t4-nn-linear-mseloss-view-as": "t4-mv-nn-linear-mseloss-view-as",
    "t4-lesson-grad-sum-mv": "t4-mv-lesson-grad-sum-mv",
}


def tutorial_of(name: str) -> str:
    """The title of the tutorial a seed scenario comes from (`"t4-mv-..."` -> SPEC's 4)."""
    number = name.split("-", 1)[0].rstrip("abcdefg")
    return TUTORIALS[number][1]


def current_name(name: str) -> str:
    """A seed scenario's name now, given its earlier name (dtype suffix kept); else `name`."""
    stem, dash, suffix = name.rpartition("-")
    if suffix in ("f32", "f64") and stem in RENAMED:
        return f"{RENAMED[stem]}{dash}{suffix}"
    return RENAMED.get(name, name)


_MV_X = _multivariate
_T5 = "t5 (regression.csv)"


def _workflows() -> list[dict]:
    """The scenarios, without dtype: each becomes a `-f32` and a `-f64` Scenario."""
    zeros = {"W": np.zeros(1), "b": np.zeros(1)}
    t1 = dict(
        form="x*W+b",
        init=zeros,
        torch_loss="torch.mean((h - y) ** 2)",
        opt_kwargs=(("lr", 0.01),),
        epochs=1001,
    )
    real = dict(epochs=30)
    return [
        dict(
            name="t1-line-optim-sgd",
            data=_line(1.0),
            **t1,
            note="t1: W = b = zeros(1); hypothesis = x * W + b; optim.SGD([W, b], lr=0.01); "
            "range(nb_epochs + 1)",
        ),
        dict(
            name="t2-line-nn-module",
            data=_line(1.0),
            form="nn.Module",
            init=TorchInit(1, 1),
            torch_loss="F.mse_loss",
            opt_kwargs=(("lr", 0.01),),
            epochs=1001,
            note="t2: nn.Linear(1, 1) inside an nn.Module (torch's init, seed 1), F.mse_loss, "
            "optim.SGD(model.parameters(), lr=0.01)",
        ),
        dict(
            name="t3-line-2x-optim-sgd",
            data=_line(2.0),
            **t1,
            note="t3: y = 2x, the same loop as t1",
        ),
        dict(
            name="t3-line-2x-lesson-grad-accumulation",
            data=_no_data,
            init={"w": np.asarray(2.0)},
            lesson="grad-accumulation",
            epochs=21,
            note="t3: z = 2 * w; z.backward() without zero_grad(): w.grad = 2, 4, 6, ...",
        ),
        dict(
            name="t3-line-2x-lesson-grad-2w2+5",
            data=_no_data,
            init={"w": np.asarray(2.0)},
            lesson="grad-square",
            epochs=1,
            note="t3: d(2 w**2 + 5)/dw at w = 2 is 8",
        ),
        dict(
            name="t4-mv-manual-data",
            jax_loop="make_step",
            data=_MV_X,
            form="torch.mv",
            init={"w": _w0},
            torch_loss="torch.mean((h - y) ** 2)",
            update="data",
            opt_kwargs=(("lr", 0.1),),
            epochs=100,
            note="t4: y_pred = torch.mv(X, w); w.data = w.data - 0.1 * w.grad.data; w.grad = None",
        ),
        dict(
            name="t4-mv-nn-linear-mseloss-view-as",
            data=_MV_X,
            form="nn.Linear-nobias",
            init=TorchInit(0, 3, bias=False),
            torch_loss="nn.MSELoss()(y_pred.view_as(y), y)",
            opt_kwargs=(("lr", 0.1),),
            epochs=100,
            note="t4: nn.Linear(3, 1, bias=False), optim.SGD(lr=0.1), "
            "nn.MSELoss() on y_pred.view_as(y)",
        ),
        dict(
            name="t4-mv-lesson-grad-sum-mv",
            data=_MV_X,
            init={"a": _w0},
            lesson="grad-sum-mv",
            epochs=1,
            note="t4: the gradient of sum(torch.mv(x, a)) with respect to a is x.sum(0)",
        ),
        dict(
            name="t5a-real-sum-manual",
            jax_loop="make_step",
            data=_real_design,
            form="X@What",
            init={"What": [[-5.0], [10.0]]},
            loss="sse",
            torch_loss="torch.sum((y - h) ** 2)",
            update="data",
            opt_kwargs=(("lr", 1 / 1000),),
            **real,
            note=f"{_T5} (a): loss = sum((y - X @ What) ** 2), alpha = 1/1000, "
            "What.data -= alpha * grad",
        ),
        dict(
            name="t5b-real-mean-manual",
            data=_real_design,
            form="X@What",
            init={"What": [[-5.0], [10.0]]},
            torch_loss="torch.mean((h - y) ** 2)",
            update="data",
            opt_kwargs=(("lr", 1 / 10),),
            **real,
            note=f"{_T5} (b): loss = mean(...), alpha = 1/10",
        ),
        dict(
            name="t5c-real-nn-linear-manual",
            jax_loop="make_step",
            data=_real_column,
            init={"weight": [[10.0]], "bias": [-5.0]},
            torch_loss="nn.MSELoss()",
            update="data",
            opt_kwargs=(("lr", 0.1),),
            **real,
            note=f"{_T5}: nn.Linear(1, 1), weight 10, bias -5, on x; manual .data updates",
        ),
        dict(
            name="t5d-real-nn-linear-optim-sgd",
            data=_real_column,
            init={"weight": [[10.0]], "bias": [-5.0]},
            torch_loss="F.mse_loss",
            opt_kwargs=(("lr", 0.1),),
            **real,
            note=f"{_T5}: nn.Linear(1, 1), weight 10, bias -5; optim.SGD(lr=0.1)",
        ),
        dict(
            name="t5e-real-nn-linear-nobias-manual",
            data=_real_design,
            form="nn.Linear-nobias",
            init={"weight": [[-5.0, 10.0]]},
            torch_loss="nn.MSELoss()",
            update="data",
            opt_kwargs=(("lr", 0.1),),
            **real,
            note=f"{_T5}: nn.Linear(2, 1, bias=False), weight [-5, 10], on X = [1, x]; "
            "manual updates",
        ),
        dict(
            name="t5f-real-nn-linear-nobias-optim-sgd",
            data=_real_design,
            form="nn.Linear-nobias",
            init={"weight": [[-5.0, 10.0]]},
            torch_loss="nn.MSELoss()",
            opt_kwargs=(("lr", 0.1),),
            **real,
            note=f"{_T5}: nn.Linear(2, 1, bias=False), weight [-5, 10]; optim.SGD(lr=0.1)",
        ),
        dict(
            name="t5g-real-tensors-optim-sgd-b-w",
            data=_real_column,
            form="b+w*x",
            init={"b": [-5.0], "w": [10.0]},
            torch_loss="torch.mean((h - y) ** 2)",
            opt_kwargs=(("lr", 0.1),),
            **real,
            note=f"{_T5}: plain tensors b, w; y_pred = b + w * x; optim.SGD([b, w], lr=0.1)",
        ),
        dict(
            name="t6-logistic-sigmoid-mse",
            jax_loop="make_step",
            data=_logistic,
            init={"weight": [[1.0]], "bias": [-1.0]},
            model="logistic",
            torch_loss="torch.mean((h - y) ** 2)",
            update="data",
            opt_kwargs=(("lr", 0.1),),
            epochs=6000,
            note="t6: yhat = sigmoid(l1(x)), l1 = nn.Linear(1, 1) weight 1 bias -1; "
            "mean((y - yhat)**2); 6000 manual updates",
        ),
        dict(
            name="t6-logistic-sigmoid-bce",
            data=_logistic,
            init={"weight": [[1.0]], "bias": [-1.0]},
            model="logistic",
            loss="bce",
            torch_loss="-torch.mean(y * log(h) + (1 - y) * log(1 - h))",
            update="data",
            opt_kwargs=(("lr", 0.1),),
            epochs=6000,
            note="t6 (exercise): -mean(y log yhat + (1 - y) log(1 - yhat)); 6000 manual updates",
        ),
        dict(
            name="t7-celsius-broadcast-no-grad",
            data=_celsius,
            form="x*w.t()+b",
            init={"w": _celsius_init("w"), "b": _celsius_init("b")},
            torch_loss="(d * d).sum() / d.numel()",
            update="no_grad",
            phases=((100, 1e-5), (10000, 1e-3)),
            note="t7: model(x) = x * w.t() + b, prediction (1, 20) against targets (20,); "
            "with torch.no_grad(): w -= w.grad * lr; 100 epochs at 1e-5, then 10000 at 1e-3",
        ),
        # Softmax regression, the multiclass tutorial: nn.Linear(4, 3) logits and
        # nn.CrossEntropyLoss on int64 class indices; the jax side trains
        # jr.objective(jr.softmax.logits, jr.losses.cross_entropy) on the same integers.
        dict(
            name="t8-softmax-nn-linear-crossentropy-sgd",
            data=_softmax_blobs,
            init=TorchInit(8, 4, 3),
            model="softmax",
            loss="cross_entropy",
            torch_loss="nn.CrossEntropyLoss()",
            opt_kwargs=(("lr", 0.1),),
            epochs=300,
            note="softmax: model = nn.Linear(4, 3); criterion = nn.CrossEntropyLoss(); "
            "optim.SGD(lr=0.1); 300 full-batch epochs on int64 labels",
        ),
        dict(
            name="t8-softmax-adam-dataloader",
            data=_softmax_blobs,
            init=TorchInit(8, 4, 3),
            model="softmax",
            loss="cross_entropy",
            torch_loss="F.cross_entropy",
            optimizer="adam",
            opt_kwargs=(("lr", 0.01),),
            epochs=20,
            batch_size=16,
            shuffle_seed=8,
            note="softmax: F.cross_entropy(model(xb), yb), optim.Adam(lr=0.01), "
            "DataLoader(batch_size=16, shuffle=True), 20 epochs",
        ),
        dict(
            name="t8-softmax-label-smoothing-momentum-loop",
            jax_loop="make_step",
            data=_softmax_blobs,
            init=TorchInit(9, 4, 3),
            model="softmax",
            loss="cross_entropy",
            loss_kwargs=(("label_smoothing", 0.1),),
            torch_loss="nn.CrossEntropyLoss()",
            opt_kwargs=(("lr", 0.05), ("momentum", 0.9)),
            epochs=10,
            batch_size=32,
            shuffle=False,
            note="softmax: nn.CrossEntropyLoss(label_smoothing=0.1), optim.SGD(lr=0.05, "
            "momentum=0.9), in-order batches of 32; the jax side a loop over jr.make_step",
        ),
    ]


def seed_scenarios() -> list[Scenario]:
    """Every tutorial workflow, in float32 and in float64."""
    out = []
    for spec in _workflows():
        for dtype, suffix in (("float32", "f32"), ("float64", "f64")):
            name = f"{spec['name']}-{suffix}"
            out.append(Scenario(**{**spec, "name": name, "source": "seed", "dtype": dtype}))
    return out
