"""The versions of faust and aiokafka that the runtime was written against.

The worker's consumer (streams/runtime/consumer.py, composed of delivery_order.py,
seeks.py, cleared.py, fetch.py and commit_rule.py), the stall guard's timer
(stall_timer.py) and the bulk path (bulk.py) override private parts of faust's consumer
and read private state of faust's, mode's and aiokafka's (delivery order, seeks, the
commit rule). Another version may move or rename those internals silently, and the
exactly-once guarantees rest on them; so a worker refuses to start on any other
version, with one line saying what to install (`check_versions`). Each part of the
consumer also names the faust methods it overrides (OVERRIDES, checked when the
consumer is installed) and the private attributes it reads (PRIVATES, checked when the
consumer is created), with `check_internals`: an install with the right version
numbers but not those internals fails at the start, not at the first rebalance.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from importlib import metadata

SUPPORTED: dict[str, str] = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0"}


class UnsupportedRuntime(RuntimeError):
    """faust or aiokafka is not the version the runtime's overrides were written for."""


def check_versions(installed: Callable[[str], str] = metadata.version) -> None:
    """Raise UnsupportedRuntime unless every package of SUPPORTED is at its version."""
    found: dict[str, str] = {}
    for package in SUPPORTED:
        try:
            found[package] = installed(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    wrong = {p: v for p, v in found.items() if v != SUPPORTED[p]}
    if wrong:
        written_for = ", ".join(f"{p} {v}" for p, v in SUPPORTED.items())
        have = ", ".join(f"{p} {v}" for p, v in wrong.items())
        pins = " ".join(f"'{p}=={v}'" for p, v in SUPPORTED.items())
        raise UnsupportedRuntime(
            f"the worker's runtime is written against {written_for}; found {have}. "
            f"Install those versions: pip install {pins}"
        )


def check_internals(owner: object, names: Iterable[str], what: str) -> None:
    """Raise UnsupportedRuntime unless `owner` has every attribute of `names` (a dotted
    name is followed from `owner`); `what` names `owner` in the message."""
    missing = [name for name in names if not _has_path(owner, name)]
    if missing:
        pins = " ".join(f"'{p}=={v}'" for p, v in SUPPORTED.items())
        raise UnsupportedRuntime(
            f"{what} has no {', '.join(missing)}: the worker's runtime overrides and "
            f"reads those internals. Install the versions it is written against: "
            f"pip install {pins}"
        )


def _has_path(owner: object, dotted: str) -> bool:
    """Whether `owner` has the attribute at `dotted` ("a.b": owner.a.b)."""
    missing = object()
    for name in dotted.split("."):
        owner = getattr(owner, name, missing)
        if owner is missing:
            return False
    return True
