"""The domain package stays pure: importing every module of streams/domain loads
neither faust nor aiokafka (nor mode, faust's service library), directly or through
another module. Checked in a fresh interpreter, so nothing imported by other tests
hides a dependency."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import streams.domain

FORBIDDEN = ("faust", "aiokafka", "mode")


def test_domain_modules_import_no_faust_and_no_kafka_client() -> None:
    modules = [f"streams.domain.{m.name}" for m in pkgutil.iter_modules(streams.domain.__path__)]
    assert len(modules) >= 14
    probe = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"print(sorted({{m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}}}))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True)  # fmt: skip
    assert result.stdout.strip() == "[]", result.stdout
