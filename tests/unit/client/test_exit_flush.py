"""The exit registry: open publishers are closed at exit, newest first, each once,
and one that fails does not keep the others open."""

from __future__ import annotations

import os

import pytest

from streams.client import exit_flush
from streams.client.exit_flush import ExitRegistry


class Closable:
    def __init__(self, name: str, closed: list[str], fail: bool = False) -> None:
        self.name, self.closed, self.fail = name, closed, fail

    def close_at_exit(self) -> None:
        self.closed.append(self.name)
        if self.fail:
            raise RuntimeError("broken")


def test_open_publishers_are_closed_newest_first_and_once() -> None:
    registry, closed = ExitRegistry(), []
    first, second, third = (Closable(n, closed) for n in ("first", "second", "third"))
    for publisher in (first, second, third):
        registry.track(publisher)
    registry.untrack(second)  # closed by its owner before exit
    registry.close_all()
    registry.close_all()
    assert closed == ["third", "first"]


def test_one_failing_close_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    registry, closed = ExitRegistry(), []
    registry.track(Closable("ok", closed))
    registry.track(Closable("broken", closed, fail=True))
    registry.close_all()
    assert closed == ["broken", "ok"]
    assert "closing at exit failed" in caplog.text


def test_a_forked_child_forgets_its_parents_publishers() -> None:
    publisher = Closable("parent's", [])
    exit_flush.track(publisher)
    try:
        pid = os.fork()
        if pid == 0:  # the child: exits with what its registry holds
            os._exit(min(len(exit_flush.REGISTRY), 100))
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert len(exit_flush.REGISTRY) >= 1  # the parent's is still there
    finally:
        exit_flush.untrack(publisher)
