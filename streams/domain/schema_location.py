"""Where the schema files are: inside the installed package, or in the checkout.

A wheel carries the repository's `schemas/` (the `v1/*.json` JSON Schemas and the
`avro/*.avsc` Avro schemas, not the examples) as package data in `streams/schemas`,
copied there by setup.py at build time. An editable install has no such copy and
reads the checkout's `schemas/` beside the package instead.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

PACKAGE = "streams"

CHECKOUT_SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
"""The repository's `schemas/`, where an editable install finds them."""


def find_schema_root(packaged: Traversable, checkout: Path) -> Path:
    """The first of `packaged` (the wheel's copy) and `checkout` that is a directory.

    `packaged` counts only on a file system (a Path): the readers of the schemas glob
    directories, which a zipped package cannot offer.
    """
    if isinstance(packaged, Path) and packaged.is_dir():
        return packaged
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(
        f"enginestream's schema files are missing: neither {packaged} (a wheel install) "
        f"nor {checkout} (a checkout) is a directory; reinstall the enginestream package"
    )


def schema_root() -> Path:
    """The directory holding `v1/` (JSON Schemas) and `avro/` (Avro schemas)."""
    return find_schema_root(files(PACKAGE) / "schemas", CHECKOUT_SCHEMAS)
