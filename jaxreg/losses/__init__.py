"""Losses with `torch.nn.functional`'s formulas, gradients and reductions.

- Elementwise, prediction and target of exactly one shape (`elementwise`): `mse`, `sse`,
  `l1`, `huber`, `smooth_l1`, `bce`, `bce_with_logits`; and the likelihoods
  (`likelihood`): `poisson_nll`, `gaussian_nll`, `kl_div`.
- Over classes, logits or log-probabilities (n, C) against class indices (n,) or class
  probabilities (n, C) (`classes`): `cross_entropy`, `nll`.

Where torch would broadcast (n,) against (n, 1) into (n, n) with a warning, these raise
`ValueError` naming both shapes. `reduction` is "mean" (torch's default), "sum" or "none";
"mean" divides like torch (`mean`).
"""

from jaxreg.losses.classes import cross_entropy, nll
from jaxreg.losses.core import Reduction, mean
from jaxreg.losses.elementwise import bce, bce_with_logits, huber, l1, mse, smooth_l1, sse
from jaxreg.losses.likelihood import gaussian_nll, kl_div, poisson_nll

__all__ = [
    "Reduction",
    "bce",
    "bce_with_logits",
    "cross_entropy",
    "gaussian_nll",
    "huber",
    "kl_div",
    "l1",
    "mean",
    "mse",
    "nll",
    "poisson_nll",
    "smooth_l1",
    "sse",
]
