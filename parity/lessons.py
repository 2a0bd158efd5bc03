"""The tutorials' autograd lessons, each written once with torch autograd and once with `jax.grad`.

A lesson's "trajectory" is what the tutorial prints: the expression's value per call (as
`losses`) and the gradient after each `backward()` (as the parameter `"<name>.grad"`).

- "grad-accumulation": `z = 2 * w; z.backward()` repeated without `zero_grad()`: torch adds
  each gradient into `w.grad`, printing 2, 4, 6, ... . JAX has no hidden state: `jax.grad`
  returns 2 every time, and reproducing torch's output means summing explicitly, which is
  exactly the lesson (forgetting `zero_grad()` is a bug torch lets you write).
- "grad-square": `d(2 w**2 + 5)/dw` at w = 2 is 8.
- "grad-sum-mv": the gradient of `sum(torch.mv(x, a))` with respect to `a` is `x.sum(0)`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from parity.scenario import Problem


def _torch_accumulation(problem: Problem, steps: int):
    import torch

    w = torch.tensor(problem.params["w"], requires_grad=True)
    values, grads = [], []
    for _ in range(steps):
        z = 2 * w
        z.backward()  # no w.grad.zero_(): the gradients accumulate
        values.append(z.item())
        grads.append(w.grad.numpy().copy())
    return values, {"w.grad": np.stack(grads)}


def _jax_accumulation(problem: Problem, steps: int):
    w = jnp.asarray(problem.params["w"])
    value_and_grad = jax.value_and_grad(lambda w: 2 * w)
    acc = jnp.zeros_like(w)
    values, grads = [], []
    for _ in range(steps):
        z, g = value_and_grad(w)
        acc = acc + g  # what torch's .grad does behind your back
        values.append(float(z))
        grads.append(np.asarray(acc))
    return values, {"w.grad": np.stack(grads)}


def _torch_square(problem: Problem, steps: int):
    import torch

    w = torch.tensor(problem.params["w"], requires_grad=True)
    y = 2 * w**2 + 5
    y.backward()
    return [y.item()], {"w.grad": w.grad.numpy().copy()[None]}


def _jax_square(problem: Problem, steps: int):
    y, g = jax.value_and_grad(lambda w: 2 * w**2 + 5)(jnp.asarray(problem.params["w"]))
    return [float(y)], {"w.grad": np.asarray(g)[None]}


def _torch_sum_mv(problem: Problem, steps: int):
    import torch

    x = torch.from_numpy(np.array(problem.data.x))
    a = torch.tensor(problem.params["a"], requires_grad=True)
    loss = torch.sum(torch.mv(x, a))
    loss.backward()
    return [loss.item()], {"a.grad": a.grad.numpy().copy()[None]}


def _jax_sum_mv(problem: Problem, steps: int):
    x = jnp.asarray(problem.data.x)
    loss, g = jax.value_and_grad(lambda a: jnp.sum(x @ a))(jnp.asarray(problem.params["a"]))
    return [float(loss)], {"a.grad": np.asarray(g)[None]}


# name -> (problem, steps) -> (values per step, {"<param>.grad": (steps, *shape)})
TORCH = {
    "grad-accumulation": _torch_accumulation,
    "grad-square": _torch_square,
    "grad-sum-mv": _torch_sum_mv,
}
JAX = {
    "grad-accumulation": _jax_accumulation,
    "grad-square": _jax_square,
    "grad-sum-mv": _jax_sum_mv,
}
