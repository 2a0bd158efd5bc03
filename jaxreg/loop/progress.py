"""Progress reporting, passed per call: a bar (tqdm when installed, else a line on stdout)
that belongs to one `fit` call. The loop runs in chunks of epochs and the bar advances
between them, so concurrent fits each see their own bar and nothing is shared.
"""

from __future__ import annotations

from typing import Any

try:
    from tqdm.auto import tqdm
except ImportError:  # pragma: no cover - tqdm is optional
    tqdm = None

__all__ = ["Bar"]


class Bar:
    """A progress bar over `total` epochs."""

    def __init__(self, total: int, *, desc: str = "fit"):
        self.total, self.done, self.desc = total, 0, desc
        self._bar: Any = tqdm(total=total, unit="epoch", desc=desc) if tqdm else None

    def update(self, k: int) -> None:
        self.done += k
        if self._bar is not None:
            self._bar.update(k)
        else:
            print(f"\r{self.desc}: epoch {self.done}/{self.total}", end="", flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        else:
            print(flush=True)
