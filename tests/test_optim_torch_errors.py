"""torch's own table of invalid optimizer arguments (`optim_db`), run against jaxreg.optim.

`torch.testing._internal.common_optimizers.optim_db` lists, per optimizer, the inputs its
constructor must refuse and the error (type and message regex). Every entry that concerns
the arguments jaxreg mirrors (not the params list, nor foreach/fused/capturable) must raise
the same error type with a matching message here. torch imports that module only with
`expecttest` installed (a test dependency of this project).
"""

from __future__ import annotations

import re

import optim_ref
import pytest
import torch

from jaxreg import optim as jro

OURS = {"SGD": jro.sgd, "Adam": jro.adam, "AdamW": jro.adamw, "RMSprop": jro.rmsprop}
OURS["Adagrad"] = jro.adagrad
OURS |= {"NAdam": jro.nadam, "RAdam": jro.radam, "Adamax": jro.adamax}
OURS |= {"Adadelta": jro.adadelta, "ASGD": jro.asgd, "Rprop": jro.rprop}
TORCH_ONLY = {"foreach", "fused", "capturable", "differentiable"}


def _entries():
    for info in optim_ref.optim_db():
        name = info.optim_cls.__name__
        if name not in OURS:
            continue
        for entry in info.optim_error_inputs_func(device="cpu", dtype=torch.float32):
            given = entry.optimizer_error_input
            if given.params is None and not TORCH_ONLY & set(given.kwargs):
                yield pytest.param(name, entry, id=f"{name}: {given.desc}")


ENTRIES = list(_entries())


def test_the_table_has_entries_for_every_mirrored_optimizer():
    assert {p.values[0] for p in ENTRIES} == set(OURS)


@pytest.mark.parametrize("name, entry", ENTRIES)
def test_torchs_invalid_arguments_raise_torchs_error(name, entry):
    with pytest.raises(entry.error_type) as info:
        OURS[name](**entry.optimizer_error_input.kwargs)
    assert re.search(entry.error_regex, str(info.value)), str(info.value)
