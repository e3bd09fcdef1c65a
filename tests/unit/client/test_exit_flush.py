"""The exit registry: open publishers are closed at exit, newest first, each once,
and one that fails does not keep the others open."""

from __future__ import annotations

import pytest

from streams.client import exit_flush


class Closable:
    def __init__(self, name: str, closed: list[str], fail: bool = False) -> None:
        self.name, self.closed, self.fail = name, closed, fail

    def close_at_exit(self) -> None:
        self.closed.append(self.name)
        if self.fail:
            raise RuntimeError("broken")


def test_open_publishers_are_closed_newest_first_and_once() -> None:
    closed: list[str] = []
    first, second, third = (Closable(n, closed) for n in ("first", "second", "third"))
    for publisher in (first, second, third):
        exit_flush.track(publisher)
    exit_flush.untrack(second)  # closed by its owner before exit
    exit_flush.close_all()
    exit_flush.close_all()
    assert closed == ["third", "first"]


def test_one_failing_close_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    closed: list[str] = []
    exit_flush.track(Closable("ok", closed))
    exit_flush.track(Closable("broken", closed, fail=True))
    exit_flush.close_all()
    assert closed == ["broken", "ok"]
    assert "closing at exit failed" in caplog.text
