"""The `enginestream` command's entry point.

`pip install enginestream` is the engine-side SDK alone; the command line needs the
worker's packages (`enginestream[worker]`). This module imports none of them until it
has found them all, so that without them the command says what to install in one line
(and `--version` still answers) instead of a traceback. The commands themselves are
in streams.cli_commands.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

from streams.version import installed_version

# What the command line and its worker import, of the `worker` extra's packages.
WORKER_MODULES = ("click", "faust", "pyarrow", "fastavro", "prometheus_client")
INSTALL = "pip install 'enginestream[worker]'"


def missing_module(modules: tuple[str, ...] = WORKER_MODULES) -> str | None:
    """The first of `modules` that cannot be imported, without importing any of them."""
    for name in modules:
        try:
            found = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            found = None
        if found is None:
            return name
    return None


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the command line, or say in one line what it needs (exit 2)."""
    args = sys.argv[1:] if argv is None else list(argv)
    missing = missing_module()
    if missing is not None:
        if "--version" in args:
            print(f"enginestream {installed_version()}")
            sys.exit(0)
        print(
            f"enginestream: the command line needs the worker's packages "
            f"({missing} is not installed): {INSTALL}",
            file=sys.stderr,
        )
        sys.exit(2)
    from streams.cli_commands import run

    run(args)


def __getattr__(name: str) -> Any:
    # `from streams.cli import cli` (the click group, or any command) keeps working;
    # the import happens only then.
    if name.startswith("__"):
        raise AttributeError(name)
    import streams.cli_commands

    return getattr(streams.cli_commands, name)


if __name__ == "__main__":
    main()
