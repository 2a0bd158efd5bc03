"""The torch DistributedDataParallel program of `python -m parity --distributed`.

    python -m parity.programs.ddp RANK WORLD PORT WORKDIR

One process of a gloo process group on 127.0.0.1:PORT (`init_process_group("gloo")`, CPU).
For every scenario in WORKDIR/scenarios.json (with the torch names of its `parity.vocab`
rows, so that this program imports only torch) it trains the way a DDP user writes it:

    model = DistributedDataParallel(nn.Linear(d, 1))        # from the scenario's start
    full batch:   each rank its contiguous rows (rank * n / WORLD ...), one step an epoch
    mini-batches: DataLoader(ds, batch_size=b, sampler=DistributedSampler(ds, WORLD, rank,
                  shuffle=True, seed=seed), drop_last=...); sampler.set_epoch(epoch)
    opt.zero_grad(); loss = loss_fn(link(model(xb)), yb); loss.backward(); opt.step()
    logged loss: all_reduce(loss) / WORLD   (the mean of the ranks' losses)

Rank 0 writes WORKDIR/torch-NAME.npz (losses, the parameters after every step); every
rank writes the rows it trained on (WORKDIR/torch-NAME-rank{r}.npy, (steps, b) or ragged
as -1-padded), so the driver can check jaxreg's replay of the sampler's order bit-exactly.
"""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

TIMEOUT = datetime.timedelta(seconds=60)  # a missing peer fails the run, not hangs it


def train(s: dict, rank: int, world: int, workdir: Path) -> None:
    """One scenario on this rank; rank 0 writes the trajectory."""
    dtype = getattr(torch, s["dtype"])
    x = torch.from_numpy(np.load(workdir / f"{s['name']}.x.npy"))
    y = torch.from_numpy(np.load(workdir / f"{s['name']}.y.npy"))
    init = np.load(workdir / f"{s['name']}.init.npz")
    layer = torch.nn.Linear(x.shape[1], y.shape[1], dtype=dtype)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(init["weight"]))
        layer.bias.copy_(torch.from_numpy(init["bias"]))
    model = DistributedDataParallel(layer)
    opt = getattr(torch.optim, s["torch_optimizer"])(model.parameters(), **s["opt_kwargs"])
    link = getattr(torch, s["torch_link"]) if s["torch_link"] else (lambda z: z)
    loss_fn = getattr(F, s["torch_loss"])

    n = x.shape[0]
    ids = torch.arange(n)
    if s["batch_size"] is None:
        per = n // world
        mine = slice(rank * per, (rank + 1) * per)

        def batches(_epoch):
            return [(x[mine], y[mine], ids[mine])]

    else:
        ds = TensorDataset(x, y, ids)
        sampler = DistributedSampler(
            ds, num_replicas=world, rank=rank, shuffle=True, seed=s["seed"]
        )
        loader = DataLoader(
            ds, batch_size=s["batch_size"], sampler=sampler, drop_last=s["drop_last"]
        )

        def batches(epoch):
            sampler.set_epoch(epoch)
            return loader

    losses, weights, biases, rows = [], [], [], []
    for epoch in range(s["epochs"]):
        for xb, yb, ib in batches(epoch):
            opt.zero_grad()
            loss = loss_fn(link(model(xb)), yb)
            loss.backward()
            opt.step()
            logged = loss.detach().clone()
            dist.all_reduce(logged)  # the sum over the ranks
            losses.append((logged / world).item())
            weights.append(layer.weight.detach().numpy().copy())
            biases.append(layer.bias.detach().numpy().copy())
            rows.append(ib.numpy())
    width = max(len(r) for r in rows)
    padded = np.full((len(rows), width), -1, np.int64)
    for i, r in enumerate(rows):
        padded[i, : len(r)] = r
    np.save(workdir / f"torch-{s['name']}-rank{rank}.npy", padded)
    if rank == 0:
        np.savez(
            workdir / f"torch-{s['name']}.npz",
            losses=np.asarray(losses),
            weight=np.stack(weights),
            bias=np.stack(biases),
        )


def main(argv: list[str]) -> int:
    rank, world, port, workdir = int(argv[0]), int(argv[1]), int(argv[2]), Path(argv[3])
    torch.set_num_threads(1)  # WORLD processes share the machine's cores
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=TIMEOUT,
    )
    try:
        for s in json.loads((workdir / "scenarios.json").read_text()):
            train(s, rank, world, workdir)
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
