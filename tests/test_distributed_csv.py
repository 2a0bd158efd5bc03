"""`jaxreg.distributed.load_csv_rows`: a CSV file as a row-sharded global array, each
process converting only its rows.

- 4 simulated CPU devices, one process (a fresh interpreter with
  `XLA_FLAGS=--xla_force_host_platform_device_count=4`): the global array equals the
  whole-file `load_csv`, exactly, on Auto and Explicit meshes, each device holding its rows.
- 2 processes over gloo on localhost (`python -m jaxreg.launch`): what is promised about
  errors (a bad value in process 1's rows is reported by process 1, with its line, and not
  seen by process 0); the loaded arrays equal the whole file exactly; and a full-batch fit
  on them equals the one-process fit within the trajectory bound of tests/test_distributed.py
  (plain SGD on mse, float64, lr = 1 / lambda_max: sum over steps of lr times the
  gradient's `sum_error_bound` plus 4u |theta|).
Every wait is bounded (launcher --timeout, subprocess timeouts, initialize's timeout_s).
"""

from __future__ import annotations

import json
import textwrap

import numpy as np
import processes

import jaxreg as jr

T = 8  # steps of the two-process fit

CHILD_4 = textwrap.dedent(
    r"""
    import json, sys
    import jax, numpy as np
    jax.config.update("jax_enable_x64", True)
    from jax.sharding import AxisType, PartitionSpec as P
    from jaxreg import data, distributed

    assert jax.device_count() == 4, jax.devices()
    path, odd = sys.argv[1:3]
    whole = data.load_csv(path, dtype=np.float64)
    table = np.stack([whole["b"], whole["a"]], axis=1)
    for kind in ("explicit", "auto"):
        t = AxisType.Explicit if kind == "explicit" else AxisType.Auto
        mesh = jax.make_mesh((4,), ("data",), axis_types=(t,))
        rows = distributed.row_sharding(mesh)
        x = distributed.load_csv_rows(path, rows, columns=("b", "a"), dtype=np.float64)
        shards = sorted((s.index[0].start, np.asarray(s.data)) for s in x.addressable_shards)
        print(json.dumps({
            "kind": kind,
            "equal": bool(np.array_equal(np.asarray(x), table)),
            "dtype": str(x.dtype),
            "spec": list(x.sharding.spec), "mesh": x.sharding.mesh == mesh,
            "shards": [[start, len(d), bool(np.array_equal(d, table[start:start + len(d)]))]
                       for start, d in shards],
            "all_columns": bool(np.array_equal(
                np.asarray(distributed.load_csv_rows(path, rows, dtype=np.float64)),
                np.stack([whole["a"], whole["b"]], axis=1))),
        }), flush=True)
    try:
        distributed.load_csv_rows(odd, distributed.row_sharding())
    except ValueError as e:
        print(json.dumps({"odd": str(e)}), flush=True)
    print("DONE", flush=True)
    """
)


def _write_csv(path, table, names, bad=None):
    """`table` as CSV text (repr: float64 round-trips exactly); `bad`: (row, text) to
    put in place of row `row`'s last field."""
    lines = [",".join(names)]
    for i, r in enumerate(table):
        fields = [repr(float(v)) for v in r]
        if bad is not None and bad[0] == i:
            fields[-1] = bad[1]
        lines.append(",".join(fields))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_four_devices_hold_their_rows_of_the_whole_file(tmp_path):
    rng = np.random.default_rng(0)
    table = rng.normal(size=(64, 2))
    path = _write_csv(tmp_path / "t.csv", table, ("a", "b"))
    odd = _write_csv(tmp_path / "odd.csv", table[:10], ("a", "b"))
    out = processes.run_on_devices(CHILD_4, 4, tmp_path, str(path), str(odd))
    meshes = [o for o in out if "kind" in o]
    assert [o["kind"] for o in meshes] == ["explicit", "auto"]
    for o in meshes:
        assert o["equal"] and o["all_columns"] and o["dtype"] == "float64", o
        assert o["spec"] == ["data"] and o["mesh"], o
        assert o["shards"] == [[16 * i, 16, True] for i in range(4)], o
    (odd_out,) = [o for o in out if "odd" in o]
    assert "10 rows do not split evenly over 4 shards" in odd_out["odd"]


WORKER = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np
    jax.config.update("jax_enable_x64", True)
    from jax.experimental import multihost_utils
    import jaxreg as jr
    from jaxreg import data, distributed

    distributed.initialize(timeout_s=60)
    good, bad, out, lr, steps = sys.argv[1:6]
    me = jax.process_index()
    rows = distributed.row_sharding()
    n = data.count_csv_rows(bad)
    mine = distributed.process_rows(n, rows)
    try:  # no collective: each process reads its own rows of the file with a bad value
        data.load_csv(bad, rows=mine)
        bad_result = "ok"
    except ValueError as e:
        bad_result = str(e)
    x = distributed.load_csv_rows(good, rows, columns=("x0", "x1", "x2"), dtype=np.float64)
    y = distributed.load_csv_rows(good, rows, columns=("y0", "y1"), dtype=np.float64)
    assert jax.process_count() == 2 and not x.is_fully_addressable
    whole = multihost_utils.process_allgather(x, tiled=True)
    p = jr.linear.Params(np.full((2, 3), 0.1), np.zeros(2))
    loss_fn = jr.objective(jr.linear.predict, jr.losses.mse)
    r = jr.fit(loss_fn, jr.optim.sgd(float(lr)), p, x, y, steps=int(steps))
    result = {"rows": [mine.start, mine.stop], "bad": bad_result,
              "x": np.asarray(whole).tolist(),
              "losses": np.asarray(r.losses).tolist(),
              "params": [np.asarray(a).tolist() for a in r.params]}
    with open(f"{out}.{me}", "w") as f:
        json.dump(result, f)
    """
)


def test_two_processes_load_their_rows_from_csv_and_fit_as_one(tmp_path):
    x, y = processes.regression(256, 3, 2)
    names = ("x0", "x1", "x2", "y0", "y1")
    good = _write_csv(tmp_path / "good.csv", np.concatenate([x, y], 1), names)
    # row 200 (line 202) is process 1's (rows 128..255): only process 1 may see it
    bad = _write_csv(tmp_path / "bad.csv", np.concatenate([x, y], 1), names, (200, "oops"))
    xt = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    lr = float(1 / (2 / y.size * np.linalg.norm(xt, 2) ** 2))
    out = tmp_path / "out.json"
    processes.launch_two(WORKER, tmp_path, str(good), str(bad), str(out), repr(lr), str(T))
    got = [json.loads((tmp_path / f"out.json.{i}").read_text()) for i in range(2)]

    assert [g["rows"] for g in got] == [[0, 128], [128, 256]]
    assert got[0]["bad"] == "ok"
    assert "line 202, column 'y1': 'oops' is not a number" in got[1]["bad"]
    for g in got:
        np.testing.assert_array_equal(np.array(g["x"]), x)  # CSV repr round-trips float64

    p0 = jr.linear.Params(np.full((2, 3), 0.1), np.zeros(2))
    loss_fn = jr.objective(jr.linear.predict, jr.losses.mse)
    ref = jr.fit(loss_fn, jr.optim.sgd(lr), p0, x, y, steps=T)
    bound = processes.sgd_mse_trajectory_bound(x, y, processes.trajectory(p0, ref.history), lr)
    flat_ref = np.concatenate([np.ravel(np.asarray(a)) for a in ref.params])
    for g in got:  # both processes hold the same replicated result
        diff = np.linalg.norm(np.concatenate([np.ravel(a) for a in g["params"]]) - flat_ref)
        assert diff <= bound, (diff, bound)
        assert np.all(np.isfinite(g["losses"])) and len(g["losses"]) == T
