"""Build the project's wheel and install it into fresh venvs, as a user would: from a
copy of the sources, into directories outside the checkout, so the source tree can
never be imported by what runs there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# What a build needs: pyproject.toml names README.md; setup.py ships schemas/.
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "streams", "schemas")
PIP = [sys.executable, "-m", "pip"]


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float) -> str:
    """Run a command to completion; fail the test with its output when it fails."""
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def outside_env(venv: Path | None = None) -> dict[str, str]:
    """This process's environment without anything that would reach the checkout's
    sources; with `venv`, that venv's bin first on PATH."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")
    }
    if venv is not None:
        env["VIRTUAL_ENV"] = str(venv)
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


@contextmanager
def outside_directory(prefix: str) -> Iterator[Path]:
    """A scratch directory outside the checkout (pytest's may be inside it)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    assert not path.is_relative_to(ROOT), path
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def build_wheel(outside: Path) -> Path:
    """The project's wheel, built from a copy of the sources under `outside`."""
    src = outside / "src"
    src.mkdir()
    for name in SOURCES:
        origin = ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, src / name)
    dist = outside / "dist"
    run([*PIP, "wheel", "--no-deps", "-q", "-w", str(dist), str(src)], outside, outside_env(), 300)
    wheels = list(dist.glob("enginestream-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def install_into_fresh_venv(
    venv: Path, requirement: str, constraints: list[str] | None = None
) -> Path:
    """A new venv at `venv` with `requirement` installed from the registry (through
    pip's cache), pinned by `constraints` when given; answers its python.

    The venv has no pip of its own (ensurepip alone takes seconds): this pip installs
    into it. No bytecode compiling either; both only save time."""
    outside = venv.parent
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], outside, outside_env(), 120)
    python = venv / "bin" / "python"
    install = [*PIP, "--python", str(python), "install", "-q", "--no-compile", requirement]
    if constraints:
        pinned = outside / f"{venv.name}-constraints.txt"
        pinned.write_text("\n".join(constraints) + "\n")
        install += ["--constraint", str(pinned)]
    run(install, outside, outside_env(venv), 300)
    return python
