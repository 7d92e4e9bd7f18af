"""Progress: a bar on a terminal, a log line now and then elsewhere."""

from __future__ import annotations

import io
import logging

import pytest

from platemask.progress import Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_one_bar_is_redrawn_and_notes_go_above_it() -> None:
    screen = _Terminal()
    progress = Progress(4, "images", stream=screen)
    progress.step("1 plates")
    progress.note("a.jpg: to check: low_confidence")
    for _ in range(3):
        progress.step("3 plates")
    progress.finish()
    text = screen.getvalue()
    assert "\r[" + "#" * 8 + "." * 22 + "] 1/4 images, 1 plates" in text
    assert "\r\033[Ka.jpg: to check: low_confidence\n" in text
    assert text.endswith("\r[" + "#" * 30 + "] 4/4 images, 3 plates\n")


def test_elsewhere_it_logs_now_and_then_and_at_the_end(caplog: pytest.LogCaptureFixture) -> None:
    pipe = io.StringIO()
    progress = Progress(1000, "files restored", every=3600, stream=pipe)
    with caplog.at_level(logging.INFO, logger="platemask"):
        for _ in range(1000):
            progress.step()
    assert pipe.getvalue() == ""
    [line] = [r.getMessage() for r in caplog.records]  # not one line per file: only the last
    assert line.startswith("Progress: 1000/1000 files restored (")
