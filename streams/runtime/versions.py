"""The versions of faust and aiokafka that the runtime was written against.

streams/runtime/consumer.py and streams/runtime/bulk.py override private parts of
faust's consumer and read private state of aiokafka's (delivery order, seeks, the
commit rule). Another version may move or rename those internals silently, and the
exactly-once guarantees rest on them; so a worker refuses to start on any other
version, with one line saying what to install.
"""

from __future__ import annotations

from collections.abc import Callable
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
