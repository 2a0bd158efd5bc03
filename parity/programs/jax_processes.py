"""The jaxreg multi-process program of `python -m parity --distributed`.

    JAX_CPU_COLLECTIVES_IMPLEMENTATION=gloo python -m parity.programs.jax_processes \\
        RANK WORLD PORT WORKDIR

One JAX process of WORLD (`jaxreg.distributed.initialize`: `jax.distributed.initialize(
coordinator_address="127.0.0.1:PORT", num_processes=WORLD, process_id=RANK)`), CPU
collectives over gloo (the variable above, which JAX reads as its
`jax_cpu_collectives_implementation` setting). For every scenario in
WORKDIR/scenarios.json, each process reads only its rows of x and y
(`distributed.load_npy_rows`, memory-mapped) and every process calls the same `jr.fit`:

    full batch:   jr.fit(loss_fn, tx, params, x, y, steps=epochs)
    mini-batches: jr.fit(..., epochs=E, batch_size=b, drop_last=...,
                         sampler=jr.distributed.DistributedSampler(seed=seed))

Process 0 writes WORKDIR/jax-NAME.npz (losses, the parameters after every step). A
scenario's `jax_lr_factor` multiplies the learning rate (`--perturb lr=...`: must fail).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import numpy as np

import jaxreg as jr
from jaxreg import distributed
from parity import precision, vocab


def train(s: dict, workdir: Path) -> None:
    """One scenario, in every process; process 0 writes the trajectory."""
    rows = distributed.row_sharding()  # every process's devices, rows split over them
    x = distributed.load_npy_rows(workdir / f"{s['name']}.x.npy", rows)
    y = distributed.load_npy_rows(workdir / f"{s['name']}.y.npy", rows)
    init = np.load(workdir / f"{s['name']}.init.npz")
    params = jr.linear.Params(init["weight"], init["bias"])
    predict = vocab.MODELS[s["model"]].jax()
    loss_fn = jr.objective(predict, vocab.LOSSES[s["loss"]].jax())
    kwargs = dict(s["opt_kwargs"])
    kwargs["lr"] = kwargs["lr"] * s["jax_lr_factor"]
    tx = vocab.OPTIMIZERS[s["optimizer"]].jax()(**kwargs)
    if s["batch_size"] is None:
        r = jr.fit(loss_fn, tx, params, x, y, steps=s["epochs"])
    else:
        sampler = distributed.DistributedSampler(seed=s["seed"])
        r = jr.fit(
            loss_fn,
            tx,
            params,
            x,
            y,
            epochs=s["epochs"],
            batch_size=s["batch_size"],
            drop_last=s["drop_last"],
            sampler=sampler,
        )
    if jax.process_index() == 0:
        np.savez(
            workdir / f"jax-{s['name']}.npz",
            losses=np.asarray(r.losses),
            weight=np.asarray(r.history.weight),
            bias=np.asarray(r.history.bias),
        )


def main(argv: list[str]) -> int:
    rank, world, port, workdir = int(argv[0]), int(argv[1]), int(argv[2]), Path(argv[3])
    distributed.initialize(f"127.0.0.1:{port}", world, rank, timeout_s=60)
    for s in json.loads((workdir / "scenarios.json").read_text()):
        with precision.for_scenario(s["dtype"]):
            train(s, workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
