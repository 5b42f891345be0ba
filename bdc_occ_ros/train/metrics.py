"""CSV metrics log: one row per logged step (step, epoch, lr, time_s, loss terms...).

Appends when the file exists (resume), keeping its header; loss terms are fixed by the first row.
"""

from __future__ import annotations

import csv
from pathlib import Path

BASE_COLUMNS = ("step", "epoch", "lr", "time_s", "loss")


class MetricsLog:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._columns: list[str] | None = None
        if self.path.is_file() and self.path.stat().st_size > 0:
            with self.path.open(newline="") as f:
                self._columns = next(csv.reader(f))

    def write(self, row: dict[str, float | int]) -> None:
        if self._columns is None:
            extra = sorted(k for k in row if k not in BASE_COLUMNS)
            self._columns = [*BASE_COLUMNS, *extra]
            with self.path.open("w", newline="") as f:
                csv.writer(f).writerow(self._columns)
        with self.path.open("a", newline="") as f:
            csv.writer(f).writerow([_fmt(row.get(c, "")) for c in self._columns])


def _fmt(value: float | int | str) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
