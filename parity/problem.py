"""Make a scenario concrete: the data, initial parameters and batch order both sides use.

Everything here is computed once, before either side trains, and handed to both as NumPy
arrays. torch is used for two things only, because the torch program defines them: its
`nn.Linear` init (`TorchInit`) and the row order a seeded, shuffling `DataLoader` yields.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from jaxreg import data as jrdata
from parity.scenario import Data, Problem, Scenario, TorchInit

DATA_ENV = "JAXREG_PARITY_DATA"


class DataNotFoundError(FileNotFoundError):
    """The real-data tutorials' CSV file is not where it was looked for."""


def default_data_path() -> Path:
    """`regression.csv`: `$JAXREG_PARITY_DATA`, else `<repo>/../shared/data/regression.csv`."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "regression.csv"


def resolve_data_path(path: str | os.PathLike | None) -> Path:
    """The CSV to read: `path` if given, else `default_data_path()`. Not checked here."""
    return Path(path) if path is not None else default_data_path()


def load_regression_csv(path: Path, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """The real-data tutorial's columns x, y, each (100,), read with `jaxreg.data.load_csv`."""
    if not path.is_file():
        raise DataNotFoundError(
            f"the real-data scenarios need regression.csv (columns x,y) and it is not at "
            f"{path}. Pass --data PATH (or data_path=...), or set ${DATA_ENV}; or leave those "
            "scenarios out with --only."
        )
    cols = jrdata.load_csv(path, columns=("x", "y"), dtype=np.float64)
    return cols["x"].astype(dtype), cols["y"].astype(dtype)


def materialize(scenario: Scenario, *, data_path: str | os.PathLike | None = None) -> Problem:
    """The concrete `Problem` (data, initial parameters, batch order) for `scenario`."""
    dtype = scenario.np_dtype
    data = scenario.data(dtype, resolve_data_path(data_path))
    if not isinstance(data, Data):
        data = Data(*data)
    data = Data(
        *(None if a is None else np.ascontiguousarray(a, _dtype_for(a, dtype)) for a in data)
    )
    if isinstance(scenario.init, TorchInit):
        params = torch_init(scenario.init, dtype)
    else:
        params = {
            k: np.array(v(dtype) if callable(v) else v, dtype) for k, v in scenario.init.items()
        }
    order = None
    if scenario.batch_size is not None and scenario.shuffle:
        order = dataloader_order(
            data.x.shape[0],
            scenario.batch_size,
            scenario.total_epochs,
            seed=scenario.shuffle_seed,
            drop_last=scenario.drop_last,
        )
    return Problem(data, params, order)


def _dtype_for(a, dtype: np.dtype) -> np.dtype:
    """The scenario's float dtype, except for integer class indices (kept int64, torch's)."""
    kind = np.asarray(a).dtype.kind
    return np.dtype(np.int64) if kind in "iu" else dtype


def torch_init(init: TorchInit, dtype: np.dtype) -> dict[str, np.ndarray]:
    """torch's own `nn.Linear` init after `torch.manual_seed(init.seed)`, as NumPy.

    The global torch RNG is forked, so the caller's random state is left as it was.
    """
    import torch

    from parity.interop import params_from_torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init.seed)
        layer = torch.nn.Linear(init.in_features, init.out_features, bias=init.bias)
    p = params_from_torch(layer)
    out = {"weight": np.asarray(p.weight).astype(dtype)}
    if p.bias is not None:
        out["bias"] = np.asarray(p.bias).astype(dtype)
    return out


def dataloader_order(
    n: int, batch_size: int, epochs: int, *, seed: int, drop_last: bool = False
) -> np.ndarray:
    """(epochs, n): the rows a `DataLoader(..., shuffle=True, generator=manual_seed(seed))` yields.

    Iterates a DataLoader over the indices `0..n-1` built exactly like the training
    loader (same length, batch size, drop_last and generator seed): its random draws (one
    base seed per epoch, then `randperm(n)`) do not depend on the dataset's contents, so it
    yields the training loader's order. `torch_side` checks every batch it trains on against
    this order (bit-exact), so a replay that drifted would fail loudly. With `drop_last` the
    dropped rows are appended in increasing order (`fit` ignores them).
    """
    import torch

    from parity.programs.torch_loop import data_loader

    loader = data_loader(
        torch.arange(n), batch_size=batch_size, shuffle=True, seed=seed, drop_last=drop_last
    )
    rows = []
    for _ in range(epochs):
        seen = torch.cat([idx for (idx,) in loader]).numpy()
        rest = np.setdiff1d(np.arange(n), seen)
        rows.append(np.concatenate([seen, rest]))
    return np.stack(rows).astype(np.int64)
