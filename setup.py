"""Build hook: the wheel carries the repository's schema files as package data.

The schemas stay at the top of the repository (`schemas/`, the contract's home); a
wheel gets a copy of the ones the worker reads (`v1/*.json`, `avro/*.avsc`, not the
examples) in `streams/schemas`, where streams/domain/schema_location.py finds them.
Everything else about the package is declared in pyproject.toml.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SCHEMAS = Path(__file__).resolve().parent / "schemas"
# What the worker reads; the examples under v1/examples are test data.
SCHEMA_GLOBS = ("v1/*.json", "avro/*.avsc")
TARGET = ("streams", "schemas")


def schema_files(root: Path) -> list[Path]:
    """The schema files to ship, relative to `root`; fails when there are none."""
    found = sorted(p.relative_to(root) for pattern in SCHEMA_GLOBS for p in root.glob(pattern))
    if not found:
        raise FileNotFoundError(f"no schema files under {root}: build from a full checkout")
    return found


class BuildPyWithSchemas(build_py):
    """build_py that also copies the schema files into the built package."""

    def run(self) -> None:
        super().run()
        # An editable install reads the checkout's schemas/ directly.
        if getattr(self, "editable_mode", False):
            return
        for rel, target in self._schema_targets():
            self.mkpath(str(target.parent))
            self.copy_file(str(SCHEMAS / rel), str(target))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = list(super().get_outputs(include_bytecode))
        if not getattr(self, "editable_mode", False):
            outputs += [str(target) for _, target in self._schema_targets()]
        return outputs

    def _schema_targets(self) -> list[tuple[Path, Path]]:
        base = Path(self.build_lib).joinpath(*TARGET)
        return [(rel, base / rel) for rel in schema_files(SCHEMAS)]


setup(cmdclass={"build_py": BuildPyWithSchemas})
