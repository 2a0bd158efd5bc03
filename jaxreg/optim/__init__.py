"""torch.optim's optimizers as optax gradient transformations, update for update.

`sgd`, `adam`, `adamw`, `rmsprop`, `adagrad`, `nadam`, `radam`, `adamax`, `adadelta`,
`asgd`, `rprop`, `lbfgs`, `adafactor`, `muon`, `sparse_adam` take `torch.optim`'s
arguments with its names, defaults and checks (the same `ValueError` messages), and
compute its update rule in its operation order (torch's CPU single-tensor path). Against
torch on CPU, over 100 steps: float64 trajectories agree to a few float64 ulps (Adam's
bias corrections are Python's bits), float32 ones to under 10 float32 ulps (SGD without
nesterov/maximize: bitwise, given the same gradients). What remains is rounding XLA and
torch do differently: XLA fuses `a * b + c` into an FMA by its own choice, torch's CPU
`sqrt` is not correctly rounded, and float32 states hold float32 hyperparameters (torch
keeps Python floats). bfloat16 and float16 parameters are computed as torch's CPU kernels
compute them: in float32, rounded where torch writes a tensor (the updates come out in
float32, so `optax.apply_updates` rounds the new parameters once, as torch's in-place
kernel does).

Each returns an `optax.GradientTransformation`, so it composes with `optax.chain` and
`optax.apply_updates(params, updates)` gives torch's new parameters. Two differences from
plain optax, both so that one compiled program serves every hyperparameter value:

- the numbers live in the optimizer state, `OptState(hyperparams, inner, origin)`:
  read them with `get_hyperparams`, change the learning rate with `set_lr` (also inside
  `jit`, also inside an `optax.chain` state);
- the transformation compares equal (and hashes equal) to any other built with the same
  structural options, whatever the numbers: `sgd(lr=0.1) == sgd(lr=0.01)`. Call
  `tx.init(params)` outside functions jitted with `tx` static (the numbers come from it).

`inject(optax.adam, learning_rate=0.1)` gives any optax transformation the same state
and the same identity. `adopt(tx, params, opt_state)` is the check at a training
boundary: the optimizer passed wins over the numbers of a state made by another one.

    tx = jaxreg.optim.sgd(lr=0.01, momentum=0.9)
    state = tx.init(params)
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    state = jaxreg.optim.set_lr(state, 0.001)      # torch: group["lr"] = 0.001
"""

from jaxreg.optim._adadelta import AdadeltaState, adadelta
from jaxreg.optim._adafactor import AdafactorState, adafactor
from jaxreg.optim._adagrad import AdagradState, adagrad
from jaxreg.optim._adam import AdamState, adam, adamw
from jaxreg.optim._adamax import AdamaxState, adamax
from jaxreg.optim._adopt import adopt, check_transformation
from jaxreg.optim._asgd import ASGDState, asgd
from jaxreg.optim._inject import inject
from jaxreg.optim._lbfgs import LBFGSState, lbfgs
from jaxreg.optim._muon import MuonState, muon
from jaxreg.optim._nadam import NAdamState, nadam
from jaxreg.optim._radam import RAdamState, radam
from jaxreg.optim._rmsprop import RMSpropState, rmsprop
from jaxreg.optim._rprop import RpropState, rprop
from jaxreg.optim._sgd import SGDState, sgd
from jaxreg.optim._sparse_adam import SparseAdamState, sparse_adam
from jaxreg.optim._state import (
    OptState,
    get_hyperparams,
    hyperparams_of,
    is_optimizer_state,
    restore_hyperparams,
    set_lr,
    strip_hyperparams,
)

__all__ = [
    "ASGDState",
    "AdadeltaState",
    "AdafactorState",
    "AdagradState",
    "AdamState",
    "AdamaxState",
    "LBFGSState",
    "MuonState",
    "NAdamState",
    "OptState",
    "RAdamState",
    "RMSpropState",
    "RpropState",
    "SGDState",
    "SparseAdamState",
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adamax",
    "adamw",
    "adopt",
    "asgd",
    "check_transformation",
    "get_hyperparams",
    "hyperparams_of",
    "inject",
    "is_optimizer_state",
    "lbfgs",
    "muon",
    "nadam",
    "radam",
    "restore_hyperparams",
    "rmsprop",
    "rprop",
    "set_lr",
    "sgd",
    "sparse_adam",
    "strip_hyperparams",
]
