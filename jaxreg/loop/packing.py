"""(params, optimizer state) as one flat vector: an XLA:CPU option of the training loop.

Inside the loop the parameters and the optimizer state can travel as one flat vector
(their leaves of the parameters' dtype; others, such as an int step count, beside it) and
each step's record (parameters, loss) as one row of one array: one kernel updates all the
leaves and one writes the record, instead of one per leaf. On XLA:CPU every kernel of a
loop body costs a dispatch, and a body of more than 8 kernels runs on the thread pool
(benchmarks/NOTES.md). `jaxreg.gradients.select` turns it on for the "cpu" backend.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Flat"]


class Flat:
    """(params, opt_state) as one flat vector of the parameters' dtype, plus other leaves.

    Used only when every parameter leaf has the same dtype; optimizer-state leaves of that
    dtype (momentum buffers, hyperparameters) join the vector, others (an int step count)
    travel beside it unchanged in form.
    """

    def __init__(self, treedef, shapes, in_vec, dtype, n_params_leaves):
        self.treedef, self.shapes, self.in_vec, self.dtype = treedef, shapes, in_vec, dtype
        self.sizes = [math.prod(s) for s in shapes]
        self.n_params_leaves = n_params_leaves
        self.n_params = sum(self.sizes[:n_params_leaves])

    @classmethod
    def of(cls, params, opt_state) -> Flat | None:
        p_leaves = jax.tree.leaves(params)
        dtypes = {jnp.result_type(leaf) for leaf in p_leaves}
        if not p_leaves or len(dtypes) != 1:
            return None
        dtype = dtypes.pop()
        leaves, treedef = jax.tree.flatten((params, opt_state))
        in_vec = [
            isinstance(leaf, (jax.Array, np.ndarray)) and leaf.dtype == dtype for leaf in leaves
        ]
        if not all(in_vec[: len(p_leaves)]):
            return None
        return cls(treedef, [jnp.shape(leaf) for leaf in leaves], in_vec, dtype, len(p_leaves))

    def ravel(self, tree):
        leaves = jax.tree.leaves(tree)
        vec = [jnp.ravel(leaf) for leaf, v in zip(leaves, self.in_vec, strict=True) if v]
        others = tuple(leaf for leaf, v in zip(leaves, self.in_vec, strict=True) if not v)
        return jnp.concatenate(vec).astype(self.dtype), others

    def unravel(self, carry):
        vec, others = carry
        others = iter(others)
        leaves, at = [], 0
        for shape, size, v in zip(self.shapes, self.sizes, self.in_vec, strict=True):
            if v:
                leaves.append(vec[at : at + size].reshape(shape))
                at += size
            else:
                leaves.append(next(others))
        return jax.tree.unflatten(self.treedef, leaves)

    def param_rows(self, rows):
        """(steps, n_params) -> the params pytree with a leading axis of length steps."""
        leaves, at = [None] * len(self.shapes), 0
        for i in range(self.n_params_leaves):
            size = self.sizes[i]
            leaves[i] = rows[:, at : at + size].reshape((rows.shape[0], *self.shapes[i]))
            at += size
        return jax.tree.unflatten(self.treedef, leaves)[0]
