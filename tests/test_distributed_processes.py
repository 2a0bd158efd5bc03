"""Two JAX processes over gloo on localhost, started by `python -m jaxreg.launch`: each
loads only its rows of a `.npy` file (`load_npy_rows`), and the sharded full-batch fit
equals the one-process fit within the trajectory bound of tests/test_distributed.py
(`sum_error_bound` per step, propagated by plain SGD with lr = 1 / lambda_max).
Every wait is bounded (launcher --timeout, subprocess timeout, initialize's timeout_s).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import processes

import jaxreg as jr
from jaxreg import distributed, launch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
T = 10  # steps

WORKER = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np
    jax.config.update("jax_enable_x64", True)
    import jaxreg as jr
    from jaxreg import distributed

    distributed.initialize(timeout_s=60)
    xs_path, ys_path, out, lr, steps = sys.argv[1:6]
    rows = distributed.row_sharding()
    x = distributed.load_npy_rows(xs_path, rows)
    y = distributed.load_npy_rows(ys_path, rows)
    assert jax.process_count() == 2 and not x.is_fully_addressable
    p = jr.linear.Params(np.full((2, 5), 0.1), np.zeros(2))
    loss_fn = jr.objective(jr.linear.predict, jr.losses.mse)
    r = jr.fit(loss_fn, jr.optim.sgd(float(lr)), p, x, y, steps=int(steps))
    # key-shuffled mini-batches: each process passes its own (equal) typed key
    mb = jr.fit(loss_fn, jr.optim.sgd(float(lr)), p, x, y, epochs=2, batch_size=64,
                key=jax.random.key(7))
    if jax.process_index() == 0:
        with open(out, "w") as f:
            json.dump({"losses": r.losses.tolist(),
                       "params": [np.asarray(a).tolist() for a in r.params],
                       "mb_params": [np.asarray(a).tolist() for a in mb.params]}, f)
    """
)


def test_two_process_fit_equals_one_process_fit(tmp_path):
    x, y = processes.regression(1024, 5, 2)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    xt = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    lam = 2 / y.size * np.linalg.norm(xt, 2) ** 2
    lr = float(1 / lam)
    out = tmp_path / "out.json"
    data = [str(tmp_path / "x.npy"), str(tmp_path / "y.npy")]
    processes.launch_two(WORKER, tmp_path, *data, str(out), repr(lr), str(T))
    got = json.loads(out.read_text())

    p0 = jr.linear.Params(np.full((2, 5), 0.1), np.zeros(2))
    loss_fn = jr.objective(jr.linear.predict, jr.losses.mse)
    ref = jr.fit(loss_fn, jr.optim.sgd(lr), p0, x, y, steps=T)
    bound = processes.sgd_mse_trajectory_bound(x, y, processes.trajectory(p0, ref.history), lr)
    diff = np.linalg.norm(
        np.concatenate([np.ravel(g) for g in got["params"]])
        - np.concatenate([np.ravel(np.asarray(a)) for a in ref.params])
    )
    assert diff <= bound, (diff, bound)
    assert np.all(np.isfinite(got["losses"])) and len(got["losses"]) == T

    # mini-batches hold whole rows on every device: the same sums in the same order
    mb = jr.fit(loss_fn, jr.optim.sgd(lr), p0, x, y, epochs=2, batch_size=64, key=jax.random.key(7))
    for g, want in zip(got["mb_params"], mb.params, strict=True):
        np.testing.assert_array_equal(np.asarray(g), np.asarray(want))


def test_unreachable_coordinator_is_a_clear_bounded_error(tmp_path):
    script = tmp_path / "join.py"
    port = launch.free_port()  # nobody listens there
    script.write_text(
        "from jaxreg import distributed\n"
        f"distributed.initialize('127.0.0.1:{port}', 2, 1, timeout_s=2)\n"
    )
    env = {**os.environ, "PYTHONPATH": ROOT}
    proc = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0
    assert "ConnectionError" in proc.stderr and f"127.0.0.1:{port}" in proc.stderr
    assert "could not be reached within 2 s" in proc.stderr


def test_launcher_exits_with_the_first_failure(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text(
        "import os, sys, time\n"
        "if os.environ['JAXREG_PROCESS_ID'] == '1': sys.exit(7)\n"
        "time.sleep(60)\n"  # process 0 would wait: the launcher stops it
    )
    proc = subprocess.run(
        [sys.executable, "-m", "jaxreg.launch", "-n", "2", "--timeout", "50", str(script)],
        env={**os.environ, "PYTHONPATH": ROOT},
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 7, proc.stderr


def test_process_rows_single_process():
    rows = distributed.row_sharding()
    assert distributed.process_rows(8, rows) == range(0, 8)
    assert jax.process_count() == 1
