"""Every scenario, and selection by name pattern, dtype and source."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

from parity.matrix import matrix_scenarios
from parity.scenario import Scenario
from parity.tutorials import RENAMED, current_name, seed_scenarios


def all_scenarios() -> list[Scenario]:
    """The seed (tutorial) scenarios, then the matrix; names are unique."""
    out = seed_scenarios() + matrix_scenarios()
    names = [s.name for s in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise RuntimeError(f"duplicate scenario names: {dupes}")
    return out


def matches(name: str, pattern: str) -> bool:
    """A glob (`t5*`, `*-f64`) if the pattern has `*?[`, else a substring."""
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(name, pattern)
    return pattern in name


def select(
    scenarios: Iterable[Scenario] | None = None,
    *,
    only: Iterable[str] | str | None = None,
    dtype: str | None = None,
    source: str | None = None,
) -> list[Scenario]:
    """The scenarios whose name matches any of `only` and whose dtype/source are as given."""
    pool = all_scenarios() if scenarios is None else list(scenarios)
    patterns = [only] if isinstance(only, str) else list(only or [])
    return [
        s
        for s in pool
        if (not patterns or any(matches(n, p) for n in _names(s.name) for p in patterns))
        and (dtype is None or s.dtype == dtype)
        and (source is None or s.source == source)
    ]


def _names(name: str) -> list[str]:
    """A scenario's name and its earlier names (`parity.tutorials.RENAMED`)."""
    stem, _, suffix = name.rpartition("-")
    return [name] + [f"{old}-{suffix}" for old, new in RENAMED.items() if new == stem]


def get(name: str) -> Scenario:
    """The scenario called `name` (exactly; an earlier name of a renamed tutorial scenario
    works too); `KeyError` listing close names otherwise."""
    name = current_name(name)
    pool = all_scenarios()
    for s in pool:
        if s.name == name:
            return s
    close = [s.name for s in pool if name.split("-")[0] in s.name][:10]
    raise KeyError(f"no scenario {name!r}; similar: {close}")
