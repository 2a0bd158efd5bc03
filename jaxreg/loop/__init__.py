"""The training loop behind `fit`: its static shape, its batches, the compiled program,
and progress reporting.

- `spec.py`: `LoopSpec` (everything static about a run) and its validation from `fit`'s
  arguments.
- `batches.py`: the row order of each epoch and its batches (full batch, sequential, a
  replayed torch `DataLoader` order, a permutation from a JAX key); the same order as
  host-side index arrays for Python loops (`batch_indices`).
- `replicas.py`: per-replica batches and their averaged gradient (torch DDP's step),
  sharded with `jax.shard_map` or simulated on one device.
- `packing.py`: (params, optimizer state) as one flat vector, an XLA:CPU loop option.
- `program.py`: the compiled loop (a `lax.scan` over epochs, one over batches).
- `progress.py`: progress bars passed per call (the loop runs in chunks between updates).
"""
