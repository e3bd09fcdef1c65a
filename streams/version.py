"""The installed distribution's version, for `enginestream --version` and the SDK's
sessions."""

from __future__ import annotations

from importlib import metadata


def installed_version() -> str:
    """The version of the installed `enginestream` distribution ("0+unknown" for a
    checkout that was never installed)."""
    try:
        return metadata.version("enginestream")
    except metadata.PackageNotFoundError:
        return "0+unknown"
