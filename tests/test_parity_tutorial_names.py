"""Every tutorial scenario's name says which tutorial it comes from (`parity.tutorials`)."""

import pytest

import parity
from parity.tutorials import RENAMED, TUTORIALS, tutorial_of

SEED = parity.select(source="seed")


def test_every_seed_name_is_its_workflow_then_its_tutorial():
    assert len(SEED) >= 14 * 2
    for s in SEED:
        number = s.name.split("-", 1)[0].rstrip("abcdefg")
        slug = TUTORIALS[number][0]
        assert s.name.startswith(f"{s.name.split('-', 1)[0]}-{slug}-"), s.name
        assert tutorial_of(s.name) == TUTORIALS[number][1]


@pytest.mark.parametrize("old", sorted(RENAMED))
def test_earlier_names_still_select_their_scenario(old):
    new = RENAMED[old]
    assert parity.get(f"{old}-f32").name == f"{new}-f32"
    assert [s.name for s in parity.select(only=f"{old}-*")] == [f"{new}-f32", f"{new}-f64"]
    assert old not in {s.name.rsplit("-", 1)[0] for s in SEED}  # renamed, not duplicated
