"""The SDK stays light: importing it loads neither Faust (nor its `mode`) nor the
router's domain code, though it shares the packing with the router."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def loaded_after(imports: str, prefixes: tuple[str, ...]) -> list[str]:
    """The modules with one of `prefixes` that a fresh interpreter has loaded after
    `import <imports>`."""
    code = (
        f"import sys, {imports}; "
        f"print('\\n'.join(m for m in sys.modules if m.startswith({prefixes!r})))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode().split()


def test_the_sdk_does_not_import_faust() -> None:
    code = (
        "import sys, streams.client, streams.client.sync; "
        "loaded = [m for m in sys.modules if m == 'faust' or m.startswith(('faust.', 'mode.'))]; "
        "sys.exit(1 if loaded else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True)
    assert result.returncode == 0, result.stderr.decode()


@pytest.mark.parametrize(
    "imports", ["streams.client", "streams.client.publisher", "streams.kafka.packing"]
)
def test_the_sdk_and_its_packing_do_not_import_the_router(imports: str) -> None:
    loaded = loaded_after(imports, ("faust", "mode", "streams.domain.router", "streams.agents"))
    assert loaded == []


def test_the_sdk_imports_on_a_platform_without_fcntl() -> None:
    # fcntl is POSIX only: the SDK must import where it does not exist (Windows).
    # Blocking it also blocks the standard library's POSIX-only users of it, which
    # the SDK must not need either.
    code = "import sys; sys.modules['fcntl'] = None; import streams.client, streams.client.sync"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True)
    assert result.returncode == 0, result.stderr.decode()


def test_blocking_fcntl_is_felt_by_what_needs_it() -> None:
    code = "import sys; sys.modules['fcntl'] = None; import streams.durable.filesink"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True)
    assert result.returncode != 0 and b"fcntl" in result.stderr
