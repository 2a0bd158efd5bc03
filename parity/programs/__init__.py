"""The two training programs every parity run goes through, one per framework.

- `torch_loop`: the one torch loop (any model, loss, optimizer or hand-written update,
  per-epoch schedulers, full batch or a `DataLoader`), yielding a `StepRecord` per update.
- `jax_loop`: the one jaxreg run (`jr.fit`, or a Python loop over `jr.make_step`).

`parity.torch_side` / `parity.jax_side` turn a `Scenario` into these programs' arguments;
`parity.verify` hands them a user's torch program and port.
"""
