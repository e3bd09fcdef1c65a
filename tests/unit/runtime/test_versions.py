"""The worker refuses faust and aiokafka versions its runtime was not written for."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from streams.runtime.versions import (
    SUPPORTED,
    UnsupportedRuntime,
    check_internals,
    check_versions,
)


def test_the_installed_versions_are_the_supported_ones() -> None:
    check_versions()
    assert {p: metadata.version(p) for p in SUPPORTED} == SUPPORTED


def test_the_worker_extra_pins_the_supported_versions() -> None:
    # What `pip install 'enginestream[worker]'` brings is what the worker accepts; the
    # SDK alone takes a range of aiokafka, and the extra narrows it.
    pyproject = tomllib.loads((Path(__file__).resolve().parents[3] / "pyproject.toml").read_text())
    worker = pyproject["project"]["optional-dependencies"]["worker"]
    pins = dict(r.split("==") for r in worker if "==" in r)
    assert pins == SUPPORTED


def test_another_version_is_refused_with_what_to_install() -> None:
    versions = {**SUPPORTED, "aiokafka": "0.15.0"}
    with pytest.raises(UnsupportedRuntime) as refused:
        check_versions(versions.__getitem__)
    message = str(refused.value)
    assert "found aiokafka 0.15.0" in message
    assert "pip install 'faust-streaming==0.15.3' 'aiokafka==0.14.0'" in message


def test_a_missing_package_is_refused() -> None:
    def installed(package: str) -> str:
        if package == "faust-streaming":
            raise metadata.PackageNotFoundError(package)
        return SUPPORTED[package]

    with pytest.raises(UnsupportedRuntime, match="faust-streaming not installed"):
        check_versions(installed)


def test_the_worker_command_says_it_in_one_line_and_exits_1() -> None:
    probe = (
        "import sys\n"
        "from importlib import metadata\n"
        "real = metadata.version\n"
        "metadata.version = lambda p: '9.9.9' if p == 'aiokafka' else real(p)\n"
        "import streams.runtime.versions as v\n"
        "v.check_versions.__defaults__ = (metadata.version,)\n"
        "from streams.cli import main\n"
        "main(['worker'])\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "PATH": ""})  # fmt: skip
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "found aiokafka 9.9.9" in lines[0], result.stderr


def test_a_missing_internal_is_refused_with_what_to_install() -> None:
    class Faust:
        _read_offset: dict[str, int] = {}

    with pytest.raises(UnsupportedRuntime) as refused:
        check_internals(Faust(), ["_read_offset", "_gap", "_read_offset.x"], "faust's Consumer")
    message = str(refused.value)
    assert "faust's Consumer has no _gap, _read_offset.x:" in message
    assert "pip install 'faust-streaming==0.15.3' 'aiokafka==0.14.0'" in message
