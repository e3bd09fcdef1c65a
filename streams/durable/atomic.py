"""Atomic whole-file replacement on a POSIX file system.

`atomic_replace` writes the new content to a temporary file in the target's own
directory, flushes and fsyncs it, renames it over the target with `os.replace` (atomic
within one file system) and fsyncs the directory so the rename itself is durable. A
reader — or a process restarted after a crash at any point — sees either the old file
or the new one, whole, never a mixture or a prefix.

If anything fails before the rename, the temporary file is removed and the target is
untouched. (A process killed outright cannot clean up: the temporary file, named
``.<name>.<random>.tmp``, then stays behind; its owner may delete such files when it
next starts.)
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def fsync_dir(path: Path) -> None:
    """fsync the directory `path`, making renames and creations of its entries durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A temporary file that replaces `path` atomically and durably when the block ends
    without an exception; on an exception it is deleted and `path` is untouched.

    Steps: temp file in the same directory, the block writes it, flush, fsync,
    `os.replace` onto `path`, fsync the directory.
    """
    path = Path(path)
    directory = path.parent
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as tmp:
            yield tmp
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    fsync_dir(directory)


def atomic_replace(path: Path, data: bytes) -> None:
    """Replace the content of `path` with `data` atomically and durably (`atomic_file`)."""
    with atomic_file(path) as tmp:
        tmp.write(data)
