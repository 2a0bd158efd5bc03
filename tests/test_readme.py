"""README's Python examples run as written, one after another as a reader would paste them.

Each ```python block of README.md runs in one child process (4 simulated CPU devices, for
the sharded-data example), in order, sharing its variables, in a scratch directory (the
checkpoint example writes a file). Where a block continues a context the README gives in
prose (the torch model being ported, the weights `w`, the row-sharded x of `train.py`), a
few lines here set that context up first: `CONTEXT`, keyed by a line of the block. The
multi-process `train.py` block runs as README runs it, `python -m jaxreg.launch -n 2`.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import processes
from processes import ROOT, launch_two, run_on_devices

import jaxreg as jr

README = Path(ROOT) / "README.md"
REGRESSION_CSV = Path(ROOT).parent / "shared" / "data" / "regression.csv"

# A line that identifies a block -> the lines that give it the context the README states.
CONTEXT = {
    "sample_weight=w)": "w = np.linspace(0.5, 1.5, len(x))  # per-sample weights\n",
    "params = params_from_torch(model)": (
        "import torch\n"
        "model = torch.nn.Linear(1, 1)  # a torch run, part way through training\n"
        "optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, amsgrad=True)\n"
        "for _ in range(3):\n"
        "    optimizer.zero_grad()\n"
        "    loss = torch.nn.functional.mse_loss(model(torch.tensor(x)), torch.tensor(y))\n"
        "    loss.backward()\n"
        "    optimizer.step()\n"
    ),
    "cmp = parity.verify(model,": (
        "model = torch.nn.Linear(1, 1)  # the torch program being ported\n"
        "opt = torch.optim.Adam(model.parameters(), lr=0.01)\n"
    ),
    "sampler = distributed.DistributedSampler(seed=0)": (
        "from jaxreg import distributed\n"
        "x, y = xs, ys  # row-sharded, as train.py's\n"
        "n, epoch = len(x), 0\n"
    ),
}
# float32, 100 SGD steps: the two-process gradient is the one-process one summed in another
# order (a few ulps a step); measured 1.1e-7 relative here; parity's float32 DDP bound.
TWO_PROCESS_RTOL = 1e-5
SKIP = ("# train.py",)  # run by its own test below, on two processes


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_every_python_block_is_run_or_named():
    found = blocks()
    assert len(found) >= 10
    for key in CONTEXT:
        assert sum(key in b for b in found) == 1, key  # each context fits one block
    for skip in SKIP:
        assert sum(b.startswith(skip) for b in found) == 1, skip


def test_readme_examples_run(tmp_path):
    parts = [f"import os\nos.chdir({str(tmp_path)!r})\n"]
    ran = 0
    for i, block in enumerate(blocks()):
        if block.startswith(SKIP):
            continue
        context = "".join(v for k, v in CONTEXT.items() if k in block)
        block = block.replace("../shared/data/regression.csv", str(REGRESSION_CSV))
        parts.append(f"# README block {i}\n{context}{block}print('{{\"block\": {i}}}')\n")
        ran += 1
    parts.append("print('DONE')\n")
    out = run_on_devices("".join(parts), 4, tmp_path)
    assert len(out) == ran  # every block reached its end
    assert (tmp_path / "ckpt.npz").exists()


def test_readme_train_py_runs_on_two_processes(tmp_path):
    (train,) = [b for b in blocks() if b.startswith(SKIP)]
    x, y = (a.astype(np.float32) for a in processes.regression(64, 3, 1))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    # the block as written, then its result where the test can read it (rank 0)
    script = f"import os\nos.chdir({str(tmp_path)!r})\n{train}"
    script += (
        "if jax.process_index() == 0:\n    np.save('w.npy', np.asarray(result.params.weight))\n"
    )
    script = script.replace(
        "import jaxreg as jr", "import jax\nimport numpy as np\nimport jaxreg as jr"
    )
    launch_two(script, tmp_path)
    one = jr.fit(
        jr.objective(jr.linear.predict, jr.losses.mse),
        jr.optim.sgd(0.1),
        jr.linear.init(0, x.shape[1], y.shape[1]),
        x,
        y,
        steps=100,
    )
    # the rows split over two processes: equal to one process's fit up to the order of sums
    w = np.load(tmp_path / "w.npy")
    np.testing.assert_allclose(w, one.params.weight, rtol=TWO_PROCESS_RTOL)
