"""Progress of a long loop: a one-line bar on a terminal, else a log line every few seconds."""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import TextIO

__all__ = ["Progress"]

log = logging.getLogger("platemask")


class Progress:
    """Counts steps of ``total`` (thread-safe), for ``platemask mask-dir`` and restores.

    On a terminal it redraws one bar; elsewhere (task logs, pipes) it logs a line every
    ``every`` seconds and at the end, so a long run shows it is alive without flooding the log.
    """

    def __init__(self, total: int, unit: str, *, every: float = 5.0, stream: TextIO | None = None) -> None:
        self.total, self.unit, self.every = total, unit, every
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.count = 0
        self.started = self.last = time.monotonic()
        self._lock = threading.Lock()

    def step(self, detail: str = "") -> None:
        """One more done; ``detail`` (e.g. ``12 plates``) is shown beside the count."""
        with self._lock:
            self.count += 1
            suffix = f", {detail}" if detail else ""
            if self.tty:
                filled = round(30 * self.count / max(self.total, 1))
                self.stream.write(
                    f"\r[{'#' * filled}{'.' * (30 - filled)}] {self.count}/{self.total} {self.unit}{suffix}"
                )
                self.stream.flush()
                return
            now = time.monotonic()
            if now - self.last >= self.every or self.count == self.total:
                self.last = now
                rate = self.count / max(now - self.started, 1e-6)
                log.info("Progress: %d/%d %s (%.0f/s)%s", self.count, self.total, self.unit, rate, suffix)

    def note(self, line: str) -> None:
        """A line of its own, above the bar on a terminal."""
        with self._lock:
            self.stream.write(("\r\033[K" if self.tty else "") + line + "\n")

    def finish(self) -> None:
        """End the bar's line on a terminal."""
        if self.tty:
            self.stream.write("\n")
