"""L-BFGS with torch.optim.LBFGS's arguments, defaults and algorithm, inside one jitted update.

torch's `optimizer.step(closure)` does up to `max_iter` inner iterations, each one or more
loss/gradient evaluations (`closure()`). Here the closure is optax's `value_fn` extra
argument (`jaxreg.step` passes it): one `update` is one `step(closure)`, the whole of it a
`lax.while_loop` (the strong-Wolfe line search nested in it), the history a fixed-size ring
buffer. The scalar arithmetic follows torch's line by line (`lbfgs.py`, its
`_strong_wolfe` and `_cubic_interpolate`), Python floats (the losses, `t` where torch keeps
it a float) in `scalar_dtype()` and 0-d tensors (`gtd`, `ys`, `ro`, `H_diag`) in the
parameters' dtype, each product rounded before it is added, as torch's separate kernels
round it (an optimization barrier stops XLA fusing them into one FMA).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from jaxreg import _checks
from jaxreg.optim import _base
from jaxreg.optim._state import HyperparamsInit, OptState, unwrap

# torch's `_strong_wolfe` defaults (LBFGS.step passes neither, nor its own tolerance_change)
_C1, _C2, _LS_TOLERANCE_CHANGE = 1e-4, 0.9, 1e-9


class LBFGSState(NamedTuple):
    """`lbfgs`'s own state (the `inner` of its `OptState`): torch's `state` of the first
    parameter, the parameters flattened in their pytree order (torch: `param_groups` order).

    Attributes:
      func_evals: int32, loss evaluations so far (torch's `state["func_evals"]`).
      n_iter: int32, inner iterations so far (torch's `state["n_iter"]`).
      d: (n,) the last search direction.
      t: the last step length (a Python float in torch: `scalar_dtype()`).
      old_dirs, old_stps: (history_size, n) ring buffers of the gradient differences `y`
        and steps `s` (torch's lists `old_dirs`, `old_stps`).
      ro: (history_size,) `1 / (y . s)` of each pair.
      num_old: int32, pairs held (torch's `len(old_dirs)`).
      head: int32, the ring position of the oldest pair.
      h_diag: the initial inverse-Hessian scale `H_diag` (a 0-d tensor in torch).
      prev_flat_grad: (n,) the gradient at the start of the last iteration.
      prev_loss: the loss there (a Python float in torch).
    """

    func_evals: jax.Array
    n_iter: jax.Array
    d: jax.Array
    t: jax.Array
    old_dirs: jax.Array
    old_stps: jax.Array
    ro: jax.Array
    num_old: jax.Array
    head: jax.Array
    h_diag: jax.Array
    prev_flat_grad: jax.Array
    prev_loss: jax.Array


@dataclasses.dataclass(frozen=True)
class LBFGSInit(HyperparamsInit):
    """`lbfgs(...).init`; `history_size` is structural (the ring buffers' length).

    Returns `OptState(hyperparams={"lr", "tolerance_change", "tolerance_grad"},
    inner=LBFGSState, origin)`; the hyperparameters in `scalar_dtype()` (torch's Python
    floats), whatever the parameters' dtype.
    """

    history_size: int

    def __call__(self, params: Any) -> OptState:
        dtype = _float_dtype(params)
        n = sum(int(np.size(p)) for p in jax.tree_util.tree_leaves(params))
        scalar = _base.scalar_dtype()
        inner = LBFGSState(
            func_evals=_base.zero_step(),
            n_iter=_base.zero_step(),
            d=np.zeros((n,), dtype),
            t=np.zeros((), scalar),
            old_dirs=np.zeros((self.history_size, n), dtype),
            old_stps=np.zeros((self.history_size, n), dtype),
            ro=np.zeros((self.history_size,), dtype),
            num_old=_base.zero_step(),
            head=_base.zero_step(),
            h_diag=np.ones((), dtype),
            prev_flat_grad=np.zeros((n,), dtype),
            prev_loss=np.zeros((), scalar),
        )
        return self.new_state(inner, scalar)


def _float_dtype(params: Any) -> np.dtype:
    dtype = _checks.float_dtype_of(params)
    if _base.is_half(dtype):
        raise TypeError(
            f"lbfgs: parameters of dtype {np.dtype(dtype).name} are not supported (torch's "
            "half-precision dot products accumulate in float32, which this mirror does not "
            "reproduce); train in float32 or float64."
        )
    return np.dtype(dtype)


class _Carry(NamedTuple):
    n_iter: jax.Array  # this step's iterations
    state: LBFGSState
    x: jax.Array  # the flat parameters (torch updates them in place)
    loss: jax.Array  # Python float in torch
    g: jax.Array  # flat_grad
    current_evals: jax.Array
    done: jax.Array


def _round(x: jax.Array) -> jax.Array:
    """A product as torch's separate kernel (or Python) rounds it, before it is added."""
    return jax.lax.optimization_barrier(x)


def _dot(a: jax.Array, b: jax.Array) -> jax.Array:
    return _round(jnp.dot(a, b, precision=jax.lax.Precision.HIGHEST))


def _cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None):
    """torch's `_cubic_interpolate`: x, f Python floats (scalar dtype), g 0-d tensors."""
    scalar, dt = x1.dtype, g1.dtype
    if bounds is not None:
        xmin_bound, xmax_bound = bounds
    else:
        xmin_bound = jnp.where(x1 <= x2, x1, x2)
        xmax_bound = jnp.where(x1 <= x2, x2, x1)
    # d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d1 = _round(g1 + g2) - (_round(3 * (f1 - f2)) / (x1 - x2)).astype(dt)
    d2_square = _round(d1 * d1) - _round(g1 * g2)
    d2 = jnp.sqrt(jnp.maximum(d2_square, 0))
    two_d2 = 2 * d2
    a = x2 - _round((x2 - x1).astype(dt) * ((g2 + d2 - d1) / (g2 - g1 + two_d2)))
    b = x1 - _round((x1 - x2).astype(dt) * ((g1 + d2 - d1) / (g1 - g2 + two_d2)))
    min_pos = jnp.where(x1 <= x2, a, b).astype(scalar)
    # min(max(min_pos, xmin_bound), xmax_bound), Python's min/max
    clipped = jnp.where(xmin_bound > min_pos, xmin_bound, min_pos)
    clipped = jnp.where(xmax_bound < clipped, xmax_bound, clipped)
    return jnp.where(d2_square >= 0, clipped, (xmin_bound + xmax_bound) / 2.0)


class _Bracket(NamedTuple):
    t: jax.Array  # (2,) scalar dtype
    f: jax.Array  # (2,) scalar dtype
    g: jax.Array  # (2, n)
    gtd: jax.Array  # (2,) params dtype


def _strong_wolfe(evaluate, x, t, d, f, g, gtd, max_ls):
    """torch's `_strong_wolfe`: `(f_new, g_new, t, ls_func_evals)`."""
    scalar, dt = t.dtype, d.dtype
    c1, c2 = jnp.asarray(_C1, scalar), jnp.asarray(_C2, scalar)
    d_norm = jnp.max(jnp.abs(d))

    def obj(t):
        f_new, g_new = evaluate(x + t.astype(dt) * d)
        return f_new, g_new, _dot(g_new, d)

    def armijo_fails(f_new, t):  # f_new > (f + c1 * t * gtd), compared as tensors
        bound = f.astype(dt) + _round(_round(c1 * t).astype(dt) * gtd)
        return f_new.astype(dt) > bound

    def curvature_holds(gtd_new):  # abs(gtd_new) <= -c2 * gtd
        return jnp.abs(gtd_new) <= _round((-c2).astype(dt) * gtd)

    f_new, g_new, gtd_new = obj(t)
    zero = jnp.zeros((), scalar)

    # bracket phase; outcome: 0 still searching, 1 a two-point bracket, 2 done
    class B(NamedTuple):
        t_prev: Any
        f_prev: Any
        g_prev: Any
        gtd_prev: Any
        t: Any
        f_new: Any
        g_new: Any
        gtd_new: Any
        ls_iter: Any
        evals: Any
        outcome: Any

    def b_cond(c):
        return (c.outcome == 0) & (c.ls_iter < max_ls)

    def b_body(c):
        bracket = armijo_fails(c.f_new, c.t) | ((c.ls_iter > 1) & (c.f_new >= c.f_prev))
        single = ~bracket & curvature_holds(c.gtd_new)
        upward = ~bracket & ~single & (c.gtd_new >= 0)
        outcome = jnp.where(bracket | upward, 1, jnp.where(single, 2, 0)).astype(jnp.int32)

        def interpolate(c):
            min_step = c.t + _round(0.01 * (c.t - c.t_prev))
            max_step = c.t * 10
            t_new = _cubic_interpolate(
                c.t_prev, c.f_prev, c.gtd_prev, c.t, c.f_new, c.gtd_new, (min_step, max_step)
            )
            f2, g2, gtd2 = obj(t_new)
            return B(
                c.t, c.f_new, c.g_new, c.gtd_new, t_new, f2, g2, gtd2, c.ls_iter + 1,
                c.evals + 1, c.outcome,
            )  # fmt: skip

        c = c._replace(outcome=outcome)
        return jax.lax.cond(outcome == 0, interpolate, lambda c: c, c)

    start = B(zero, f, g, gtd, t, f_new, g_new, gtd_new, jnp.int32(0), jnp.int32(1), jnp.int32(0))
    b = jax.lax.while_loop(b_cond, b_body, start)
    two = _Bracket(
        jnp.stack([b.t_prev, b.t]),
        jnp.stack([b.f_prev, b.f_new]),
        jnp.stack([b.g_prev, b.g_new]),
        jnp.stack([b.gtd_prev, b.gtd_new]),
    )
    one = _Bracket(
        jnp.stack([b.t, b.t]),
        jnp.stack([b.f_new, b.f_new]),
        jnp.stack([b.g_new, b.g_new]),
        jnp.stack([b.gtd_new, b.gtd_new]),
    )
    exhausted = _Bracket(  # ls_iter == max_ls: [0, t] (torch leaves bracket_gtd as it was)
        jnp.stack([zero, b.t]),
        jnp.stack([f, b.f_new]),
        jnp.stack([g, b.g_new]),
        jnp.stack([gtd, b.gtd_new]),
    )
    bracket = jax.tree.map(
        lambda e, o, tw: jnp.where(b.outcome == 0, e, jnp.where(b.outcome == 2, o, tw)),
        exhausted,
        one,
        two,
    )
    done = b.outcome == 2
    low = jnp.where(bracket.f[0] <= bracket.f[1], 0, 1).astype(jnp.int32)

    # zoom phase
    class Z(NamedTuple):
        bracket: _Bracket
        low: Any
        insuf: Any
        done: Any
        stop: Any
        ls_iter: Any
        evals: Any

    def z_cond(c):
        return ~c.done & ~c.stop & (c.ls_iter < max_ls)

    def z_body(c):
        br = c.bracket
        small = _round(jnp.abs(br.t[1] - br.t[0]).astype(dt) * d_norm) < jnp.asarray(
            _LS_TOLERANCE_CHANGE, dt
        )

        def zoom(c):
            br, low = c.bracket, c.low
            high = 1 - low
            t = _cubic_interpolate(br.t[0], br.f[0], br.gtd[0], br.t[1], br.f[1], br.gtd[1])
            hi = jnp.where(br.t[1] > br.t[0], br.t[1], br.t[0])  # Python's max
            lo = jnp.where(br.t[1] < br.t[0], br.t[1], br.t[0])
            eps = _round(0.1 * (hi - lo))
            near = jnp.where(t - lo < hi - t, t - lo, hi - t) < eps
            outside = c.insuf | (t >= hi) | (t <= lo)
            moved = jnp.where(jnp.abs(t - hi) < jnp.abs(t - lo), hi - eps, lo + eps)
            t = jnp.where(near & outside, moved, t)
            insuf = near & ~outside
            f_new, g_new, gtd_new = obj(t)
            worse = armijo_fails(f_new, t) | (f_new >= br.f[low])
            point = _Bracket(t, f_new, g_new, gtd_new)

            def put(br, i, p):
                return _Bracket(*(a.at[i].set(v) for a, v in zip(br, p, strict=True)))

            def take(br, i):
                return _Bracket(*(a[i] for a in br))

            # worse: the new point replaces the high one; low/high re-sorted
            br_worse = put(br, high, point)
            low_worse = jnp.where(br_worse.f[0] <= br_worse.f[1], 0, 1).astype(jnp.int32)
            # better: maybe old high <- old low, then low <- new point
            wolfe = curvature_holds(gtd_new)
            flip = ~wolfe & (_round(gtd_new * (br.t[high] - br.t[low]).astype(dt)) >= 0)
            br_flip = jax.tree.map(
                lambda a, b: jnp.where(flip, a, b), put(br, high, take(br, low)), br
            )
            br_better = put(br_flip, low, point)
            new_br = jax.tree.map(lambda a, b: jnp.where(worse, a, b), br_worse, br_better)
            return Z(
                new_br,
                jnp.where(worse, low_worse, low),
                insuf,
                ~worse & wolfe,
                c.stop,
                c.ls_iter + 1,
                c.evals + 1,
            )

        return jax.lax.cond(small, lambda c: c._replace(stop=jnp.array(True)), zoom, c)

    z = jax.lax.while_loop(
        z_cond,
        z_body,
        Z(bracket, low, jnp.array(False), done, jnp.array(False), b.ls_iter, b.evals),
    )
    return z.bracket.f[z.low], z.bracket.g[z.low], z.bracket.t[z.low], z.evals


@dataclasses.dataclass(frozen=True)
class LBFGSUpdate:
    """`lbfgs(...).update(grads, state, params, *, value, value_fn)`: one torch `step(closure)`.

    `grads` and `value` are the gradient and the loss at `params` (torch's first
    `closure()`); `value_fn(params)` is the closure for the later evaluations.
    """

    max_iter: int
    max_eval: int
    history_size: int
    line_search_fn: str | None

    def __call__(
        self,
        updates: Any,
        state: OptState,
        params: Any = None,
        *,
        value: Any = None,
        value_fn: Any = None,
        **extra_args: Any,
    ) -> tuple[Any, OptState]:
        del extra_args
        hp, inner = unwrap(state, LBFGSState, "lbfgs")
        if params is None or value_fn is None:
            raise ValueError(
                "lbfgs.update needs params and value_fn (the loss as a function of the "
                "params, torch's closure): call tx.update(grads, state, params, value=loss, "
                "value_fn=lambda p: loss_fn(p, x, y)); jaxreg.fit and make_step pass them."
            )
        x0, unravel = ravel_pytree(params)
        g0, _ = ravel_pytree(updates)
        if x0.shape != inner.d.shape or x0.dtype != inner.d.dtype:
            raise ValueError(
                f"lbfgs.update: the optimizer state (opt_state) holds flat buffers of "
                f"{inner.d.shape} {np.dtype(inner.d.dtype).name}, but the params flatten to "
                f"{x0.shape} {np.dtype(x0.dtype).name}. The state was made for other "
                "parameters; make it with tx.init(params)."
            )
        dt, scalar = x0.dtype, _base.scalar_dtype()
        lr = hp["lr"].astype(scalar)
        tolerance_grad = hp["tolerance_grad"].astype(dt)  # compared with 0-d tensors
        change_dt = hp["tolerance_change"].astype(dt)
        change = hp["tolerance_change"].astype(scalar)  # compared with Python floats

        def evaluate(x):
            f, g = jax.value_and_grad(lambda v: value_fn(unravel(v)))(x)
            return jnp.asarray(f).astype(scalar), g

        if value is None:
            value = value_fn(params)
        loss0 = jnp.asarray(value).astype(scalar)
        opt_cond = jnp.max(jnp.abs(g0)) <= tolerance_grad
        start = _Carry(
            jnp.int32(0),
            inner._replace(func_evals=inner.func_evals + 1),
            x0,
            loss0,
            g0,
            jnp.int32(1),
            opt_cond,
        )
        end = jax.lax.while_loop(
            lambda c: ~c.done,
            lambda c: self._iteration(c, evaluate, lr, tolerance_grad, change_dt, change),
            start,
        )
        out = unravel(end.x - x0)
        return out, OptState(hp, end.state, state.origin)

    def _iteration(self, c: _Carry, evaluate, lr, tolerance_grad, change_dt, change) -> _Carry:
        s, g = c.state, c.g
        dt = g.dtype
        n_iter = c.n_iter + 1
        state_n_iter = s.n_iter + 1
        first = state_n_iter == 1
        size = self.history_size

        def fresh(s):
            return s._replace(
                d=-g, num_old=jnp.int32(0), head=jnp.int32(0), h_diag=jnp.ones((), dt)
            )

        def two_loop(s):
            y = g - s.prev_flat_grad
            step = s.d * s.t.astype(dt)
            ys = _dot(y, step)
            accept = ys > jnp.asarray(1e-10, dt)
            full = accept & (s.num_old == size)
            head = jnp.where(full, (s.head + 1) % size, s.head)
            num = jnp.where(full, s.num_old - 1, s.num_old)
            slot = (head + num) % size
            dirs = jnp.where(accept, s.old_dirs.at[slot].set(y), s.old_dirs)
            stps = jnp.where(accept, s.old_stps.at[slot].set(step), s.old_stps)
            ro = jnp.where(accept, s.ro.at[slot].set(jnp.ones((), dt) / ys), s.ro)
            num = num + accept.astype(jnp.int32)
            h_diag = jnp.where(accept, ys / _dot(y, y), s.h_diag)

            def back(k, carry):
                q, al = carry
                i = num - 1 - k
                j = (head + i) % size
                a = _round(_dot(stps[j], q) * ro[j])
                return q + (-a) * dirs[j], al.at[i].set(a)

            q, al = jax.lax.fori_loop(0, num, back, (-g, jnp.zeros((size,), dt)))
            r = q * h_diag

            def forward(i, r):
                j = (head + i) % size
                be = _round(_dot(dirs[j], r) * ro[j])
                return r + _round(al[i] - be) * stps[j]

            d = jax.lax.fori_loop(0, num, forward, r)
            return s._replace(
                d=d, old_dirs=dirs, old_stps=stps, ro=ro, num_old=num, head=head, h_diag=h_diag
            )

        s = jax.lax.cond(first, fresh, two_loop, s)
        s = s._replace(n_iter=state_n_iter, prev_flat_grad=g, prev_loss=c.loss)
        # t = min(1.0, 1.0 / flat_grad.abs().sum()) * lr  (a tensor when 1/sum < 1), or lr
        inv = jnp.ones((), dt) / jnp.sum(jnp.abs(g))
        t_first = jnp.where(inv < 1, (inv * lr.astype(dt)).astype(lr.dtype), lr)
        t = jnp.where(first, t_first, lr)
        gtd = _dot(g, s.d)
        s = s._replace(t=t)
        stalled = gtd > -change_dt  # directional derivative below tolerance: break

        def move(c: _Carry) -> _Carry:
            d = s.d
            if self.line_search_fn is None:
                x = c.x + t.astype(dt) * d

                def again(x):
                    loss, g = evaluate(x)
                    return loss, g, jnp.max(jnp.abs(g)) <= tolerance_grad, jnp.int32(1)

                def last(x):
                    return c.loss, c.g, jnp.array(False), jnp.int32(0)

                loss, g, opt_cond, evals = jax.lax.cond(n_iter != self.max_iter, again, last, x)
                t_new = t
            else:
                loss, g, t_new, evals = _strong_wolfe(
                    evaluate, c.x, t, d, c.loss, c.g, gtd, self.max_eval - c.current_evals
                )
                x = c.x + t_new.astype(dt) * d
                opt_cond = jnp.max(jnp.abs(g)) <= tolerance_grad
            current = c.current_evals + evals
            new_s = s._replace(t=t_new, func_evals=s.func_evals + evals)
            done = (
                (n_iter == self.max_iter)
                | (current >= self.max_eval)
                | opt_cond
                | (jnp.max(jnp.abs(d * t_new.astype(dt))) <= change_dt)
                | (jnp.abs(loss - c.loss) < change)
            )
            return _Carry(n_iter, new_s, x, loss, g, current, done)

        stop = c._replace(n_iter=n_iter, state=s, done=jnp.array(True))
        return jax.lax.cond(stalled, lambda c: stop, move, c)


def lbfgs(
    lr: float = 1,
    max_iter: int = 20,
    max_eval: int | None = None,
    tolerance_grad: float = 1e-7,
    tolerance_change: float = 1e-9,
    history_size: int = 100,
    line_search_fn: str | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""L-BFGS exactly as `torch.optim.LBFGS` computes it: one `update` is one
    `optimizer.step(closure)`.

    torch's loop `for epoch in ...: loss = optimizer.step(closure)` is `jaxreg.fit` (or
    `make_step`) with this optimizer: each step runs up to `max_iter` L-BFGS iterations
    (two-loop recursion over the last `history_size` pairs; the first iteration of the
    run a gradient step of length `min(1, 1 / ||g||_1) * lr`), each followed by a step of
    length `lr` or, with `line_search_fn="strong_wolfe"`, torch's strong-Wolfe line search
    (cubic interpolation, `c1 = 1e-4`, `c2 = 0.9`), and stops as torch stops: after
    `max_iter` iterations or `max_eval` evaluations, when `max|g| <= tolerance_grad`, when
    `g . d > -tolerance_change`, when the step `max|t d|` or the loss change is below
    `tolerance_change`. A step whose starting gradient is already below `tolerance_grad`
    changes nothing (torch returns at once), so a converged run stays where it is.

    The closure is optax's extra argument `value_fn` (`jaxreg.step` passes
    `value_fn=lambda p: loss_fn(p, x, y)`, `value=` the loss and the gradient): the loss
    a step reports is the loss at the parameters before it, torch's `step(closure)` return
    value (`orig_loss`, its first closure call). Everything runs inside one jitted update:
    a `lax.while_loop`, with the history in fixed-size ring buffers.

    The parameters are flattened in pytree order (torch: the order of the parameter list),
    and the update returned is `new - params`, so `optax.apply_updates` gives torch's new
    parameters (exactly while new and old are within a factor 2 of each other; one
    rounding otherwise). Float32 and float64 parameters (half precision: `TypeError`).

    Where optax differs: `optax.lbfgs` is one L-BFGS iteration per update with a zoom line
    search of its own (other constants, initial step and memory update); it does not
    reproduce torch's iterations.

    Args:
      lr: learning rate (the step length, or the line search's first trial), >= 0.
      max_iter: L-BFGS iterations per step.
      max_eval: loss evaluations per step; default `max_iter * 5 // 4`, as torch.
      tolerance_grad: stop when the largest gradient entry is at most this.
      tolerance_change: stop when the loss or the step changes less than this.
      history_size: pairs `(y, s)` kept, >= 1.
      line_search_fn: None or `"strong_wolfe"`.

    Returns:
      An `optax.GradientTransformationExtraArgs` with state `OptState(hyperparams,
      LBFGSState, origin)`; its update needs `params` and `value_fn`.

    Raises:
      ValueError: torch's `Invalid learning rate: -1`, `Tensor lr must be 1-element`;
        `only 'strong_wolfe' is supported` (torch raises it at the first step, a
        RuntimeError); `max_iter`, `max_eval` or `history_size` below 1 (torch fails
        inside its first step).
    """
    values = {
        "lr": _base.as_number("lr", _base.as_lr(lr)),
        "tolerance_grad": _base.as_number("tolerance_grad", tolerance_grad),
        "tolerance_change": _base.as_number("tolerance_change", tolerance_change),
    }
    _base.check_lr(lr)
    if max_eval is None:
        max_eval = max_iter * 5 // 4
    for name, number in (
        ("max_iter", max_iter),
        ("max_eval", max_eval),
        ("history_size", history_size),
    ):
        if isinstance(number, bool) or not isinstance(number, (int, np.integer)) or number < 1:
            raise ValueError(
                f"lbfgs: {name} must be an integer >= 1, got {number!r} (torch.optim.LBFGS "
                "fails inside its first step with it)."
            )
    if line_search_fn is not None and line_search_fn != "strong_wolfe":
        raise ValueError("only 'strong_wolfe' is supported")
    return optax.GradientTransformationExtraArgs(
        LBFGSInit(history_size=int(history_size), hyperparams=values),
        LBFGSUpdate(
            max_iter=int(max_iter),
            max_eval=int(max_eval),
            history_size=int(history_size),
            line_search_fn=line_search_fn,
        ),
    )
