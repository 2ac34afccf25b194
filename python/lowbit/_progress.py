"""A tiny progress bar on stderr (no dependency): tensors/s and MB/s."""
from __future__ import annotations

import sys
import time
from typing import Optional, TextIO


class Progress:
    """Call ``update(done, total, bytes_done, bytes_total, name)``; ``close()`` ends the line.

    Draws only when the stream is a terminal (or ``force``), at most ``hz`` times a second.
    """

    def __init__(self, stream: Optional[TextIO] = None, *, force: bool = False, hz: float = 10.0, width: int = 24):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = force or bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = time.perf_counter()
        self.last = 0.0
        self.period = 1.0 / hz
        self.width = width
        self.drawn = False

    def __call__(self, done: int, total: int, bytes_done: int, bytes_total: int, name: str = "") -> None:
        self.update(done, total, bytes_done, bytes_total, name)

    def update(self, done: int, total: int, bytes_done: int, bytes_total: int, name: str = "") -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if done < total and now - self.last < self.period:
            return
        self.last = now
        dt = max(now - self.t0, 1e-9)
        frac = bytes_done / bytes_total if bytes_total else (done / total if total else 1.0)
        fill = int(round(frac * self.width))
        bar = "#" * fill + "." * (self.width - fill)
        tail = name if len(name) <= 40 else "…" + name[-39:]
        line = (f"\r[{bar}] {done}/{total} tensors  {done / dt:.1f} tensors/s  "
                f"{bytes_done / 1e6 / dt:.1f} MB/s  {tail}")
        self.stream.write(line.ljust(getattr(self, "_prev_len", 0)))
        self._prev_len = len(line)
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.enabled and self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False
