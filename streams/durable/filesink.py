"""Exactly-once JSONL files, one set per (channel, source partition).

Kafka Connect's file sinks make their output exactly-once by recording the source
offsets together with the data; this module does the same, per source partition,
with a checkpoint that is only ever replaced atomically.

Files for partition ``p`` of a channel whose file name is ``<stem>.jsonl``, all in one
directory:

- ``<stem>.p<p>.jsonl`` — the live segment, appended to;
- ``<stem>.p<p>.<NNNNNN>.jsonl`` — completed segments, immutable once renamed;
- ``<stem>.p<p>.checkpoint.json`` — ``{"offset", "length", "segment", "out"}``: the
  last source offset whose lines are in the files (-1: none), the committed byte
  length of the live segment, the number the live segment gets when it is rotated,
  and (once the sink has taken the partition over) the next offset of every
  dead-letter partition its ledger accounts for — the checkpoint is the sink's ledger
  of streams.durable.exactly_once, saved atomically with its lines;
- ``<stem>.p<p>.lock`` — held with ``flock(LOCK_EX)`` by the one process writing the
  partition (the kernel releases it when that process dies, even by SIGKILL).

The checkpoint is the truth: bytes of the live segment beyond ``length`` are an
uncommitted (possibly torn) tail, cut off on the next `PartitionFile.open`; a
completed segment is committed as soon as its rename has happened. Every mutation is
ordered so that a crash between any two steps, followed by `open()` and redelivery of
the source from any offset at or before ``checkpoint.offset + 1``, leaves every line
in the files exactly once, whole, in offset order:

write (one batch)
  0. (first write of a segment only) create the live file and fsync the directory —
     crash: an empty live file with checkpoint length 0, which is consistent.
  1. ``os.write`` of all new lines (one call, O_APPEND) — crash: the tail is beyond
     ``length``; open() truncates it and the redelivered lines are written again.
  2. ``fsync`` of the live segment — crash: as 1.
  3. checkpoint ``{offset: max offset written, length: new length}`` via
     `atomic_replace` — crash before its rename: as 1 (the leftover temp file is
     deleted by open()); after it: the batch is committed and redelivered lines with
     offsets <= the checkpoint offset are skipped. (Power loss: the old or the new
     checkpoint survives, and the new one only names bytes already fsynced in 2.)
rotation (when ``length >= rotate_bytes`` after a write, or found so by open())
  4. ``os.replace`` live -> ``<stem>.p<p>.<segment>.jsonl`` — crash: the checkpoint
     still names ``segment`` and ``length``, the live file is missing and the completed
     segment exists; open() finishes the rotation (checkpoint ``segment + 1``,
     length 0). Nothing is lost or repeated: the renamed file holds exactly ``length``
     committed bytes.
  5. fsync of the directory — crash: as 4 (or, after power loss, as if 4 had not
     happened: the live file still has ``length`` committed bytes).
  6. checkpoint ``{segment: segment + 1, length: 0}`` — crash before its rename: as 4;
     after it: done. The next live segment is created lazily by the next write, after
     this checkpoint, so a live file and the completed segment ``segment`` never both
     exist.
recovery (open)
  The first open of a partition writes the empty checkpoint before any data exists,
  so data files without a checkpoint are foreign and refused, never truncated.
  Truncating the tail, finishing a rotation and rotating an over-full live segment
  only move the files towards the state the checkpoint describes, with the same
  steps in the same order; a crash during recovery is recovered by the next open().

Records of one source offset (a message carrying several events) must all be in the
same `PartitionFile.write` call: a later call skips every item whose offset is <= the
last committed offset.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from streams.config.channels import SUFFIX, ChannelConfig
from streams.durable.atomic import atomic_replace, fsync_dir


class PartitionLocked(RuntimeError):
    """Another process holds the partition's lock (it is writing the same files)."""


class PartitionStateError(RuntimeError):
    """The files on disk contradict the checkpoint (data lost or changed underneath)."""


@dataclass(frozen=True)
class Checkpoint:
    """The committed state of one partition's files."""

    offset: int = -1
    length: int = 0
    segment: int = 0
    # (topic, partition, next offset) of each output the ledger accounts for; None
    # until the partition's ledger was started.
    out: tuple[tuple[str, int, int], ...] | None = None

    def to_bytes(self) -> bytes:
        """The checkpoint file's content."""
        doc: dict[str, object] = {
            "offset": self.offset, "length": self.length, "segment": self.segment
        }
        if self.out is not None:
            doc["out"] = [list(entry) for entry in self.out]
        return json.dumps(doc, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True)
class _Paths:
    directory: Path
    prefix: str  # "<stem>.p<p>"

    @classmethod
    def of(cls, directory: Path, config: ChannelConfig, partition: int) -> _Paths:
        if partition < 0:
            raise ValueError(f"partition must be >= 0, got {partition}")
        return cls(Path(directory), f"{config.stem}.p{partition}")

    @property
    def live(self) -> Path:
        return self.directory / f"{self.prefix}{SUFFIX}"

    @property
    def checkpoint(self) -> Path:
        return self.directory / f"{self.prefix}.checkpoint.json"

    @property
    def lock(self) -> Path:
        return self.directory / f"{self.prefix}.lock"

    def segment(self, number: int) -> Path:
        return self.directory / f"{self.prefix}.{number:06d}{SUFFIX}"

    def segments(self) -> list[tuple[int, Path]]:
        """Completed segments present on disk, in order."""
        pattern = re.compile(re.escape(self.prefix) + r"\.(\d{6,})" + re.escape(SUFFIX))
        found: list[tuple[int, Path]] = []
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.directory):
                match = pattern.fullmatch(entry.name)
                if match:
                    found.append((int(match.group(1)), Path(entry.path)))
        found.sort()
        return found

    def stale_temps(self) -> list[Path]:
        """Temp files left by an `atomic_replace` of the checkpoint killed mid-way."""
        prefix = f".{self.checkpoint.name}."
        with contextlib.suppress(FileNotFoundError):
            return [
                Path(e.path)
                for e in os.scandir(self.directory)
                if e.name.startswith(prefix) and e.name.endswith(".tmp")
            ]
        return []


def _read_checkpoint(paths: _Paths) -> Checkpoint | None:
    try:
        raw = paths.checkpoint.read_bytes()
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(raw)
        out = doc.get("out")
        checkpoint = Checkpoint(
            int(doc["offset"]),
            int(doc["length"]),
            int(doc["segment"]),
            None if out is None else tuple((str(t), int(p), int(o)) for t, p, o in out),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise PartitionStateError(f"{paths.checkpoint}: unreadable checkpoint: {exc}") from exc
    if checkpoint.offset < -1 or checkpoint.length < 0 or checkpoint.segment < 0:
        raise PartitionStateError(f"{paths.checkpoint}: impossible checkpoint {checkpoint}")
    return checkpoint


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def _truncate(path: Path, length: int) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, length)
        os.fsync(fd)
    finally:
        os.close(fd)


class PartitionFile:
    """The exactly-once writer of one channel's files for one source partition.

    Use: `open()` (takes the lock and recovers), any number of `write()` calls, then
    `close()`; or as a context manager. After an exception inside `write()` the object
    refuses further writes until it is closed and opened again (the files on disk are
    then recovered from the checkpoint).
    """

    def __init__(self, dir: Path, config: ChannelConfig, partition: int) -> None:
        self.dir = Path(dir)
        self.config = config
        self.partition = partition
        self._paths = _Paths.of(self.dir, config, partition)
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._state = Checkpoint()
        self._broken = False

    # -- lifecycle -----------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """Whether this object holds the partition's lock."""
        return self._lock_fd is not None

    @property
    def last_offset(self) -> int:
        """The last source offset whose lines are committed (-1: none)."""
        return self._state.offset

    @property
    def checkpoint(self) -> Checkpoint:
        """The committed state as of the last write (or open)."""
        return self._state

    def open(self, timeout: float = 0.0) -> None:
        """Take the partition's lock and recover its files to the checkpoint.

        Waits up to `timeout` seconds for another process to release the lock (useful
        when a partition moves from a worker that is still shutting down), then raises
        `PartitionLocked`. Raises `PartitionStateError` when the files contradict the
        checkpoint in a way no crash can explain (e.g. committed bytes are missing).
        """
        if self.is_open:
            raise RuntimeError(f"{self._paths.prefix} is already open")
        self.dir.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(self._paths.lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() >= deadline:
                        raise PartitionLocked(
                            f"{self._paths.lock}: held by another process"
                        ) from exc
                    time.sleep(0.01)
            self._lock_fd = lock_fd
            self._broken = False
            self._recover()
        except BaseException:
            self._lock_fd = None
            os.close(lock_fd)
            raise

    def close(self) -> None:
        """Close the live segment and release the lock. Safe to call more than once."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        lock_fd, self._lock_fd = self._lock_fd, None
        if lock_fd is not None:
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_UN)
            finally:
                os.close(lock_fd)

    def __enter__(self) -> PartitionFile:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- recovery ------------------------------------------------------------------

    def _recover(self) -> None:
        paths = self._paths
        for temp in paths.stale_temps():
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        found = _read_checkpoint(paths)
        segments = [number for number, _ in paths.segments()]
        live_size = _size(paths.live)
        if found is None:
            # A first open writes the empty checkpoint before any data, so data files
            # without a checkpoint were not written by this class: refuse to touch them.
            if segments or live_size:
                raise PartitionStateError(
                    f"{paths.checkpoint} is missing but data files exist "
                    f"(live {live_size} bytes, completed segments {segments})"
                )
            state = Checkpoint()
            atomic_replace(paths.checkpoint, state.to_bytes())
        else:
            state = found
        later = [n for n in segments if n > state.segment]
        if later:
            raise PartitionStateError(
                f"{paths.prefix}: checkpoint names segment {state.segment} as live but "
                f"completed segments {later} exist"
            )
        rotated_size = _size(paths.segment(state.segment))
        if rotated_size is not None:
            # Killed after renaming the live segment, before checkpointing the rotation.
            if live_size is not None:
                raise PartitionStateError(
                    f"{paths.prefix}: both the live segment and completed segment "
                    f"{state.segment} exist"
                )
            if rotated_size != state.length:  # only committed bytes are ever renamed
                raise PartitionStateError(
                    f"{paths.segment(state.segment)} holds {rotated_size} bytes, "
                    f"the checkpoint committed {state.length}"
                )
            state = replace(state, length=0, segment=state.segment + 1)
            atomic_replace(paths.checkpoint, state.to_bytes())
        elif live_size is None:
            if state.length > 0:
                raise PartitionStateError(
                    f"{paths.live} is missing, the checkpoint committed {state.length} bytes"
                )
        elif live_size < state.length:
            raise PartitionStateError(
                f"{paths.live} holds {live_size} bytes, the checkpoint committed "
                f"{state.length}: committed data was lost"
            )
        elif live_size > state.length:
            _truncate(paths.live, state.length)  # a torn or uncommitted tail
        self._state = state
        if state.length > 0 and state.length >= self.config.rotate_bytes:
            self._rotate()  # killed after committing a write, before rotating

    # -- writing -------------------------------------------------------------------

    def write(
        self,
        batch: Sequence[tuple[int, bytes]],
        through: int = -1,
        out: Mapping[tuple[str, int], int] | None = None,
    ) -> int:
        """Append the lines of `batch` not yet committed; return how many were written.

        `batch` is (source offset, one JSON line without its newline) pairs in offset
        order; several pairs may share an offset (a message with several records), and
        then must all be in this one call. Pairs whose offset is <= `last_offset` are
        redeliveries and skipped. `through` is the last source offset the batch
        covers (messages without a line count too), `out` the ledger's output offsets:
        both are committed with the lines, by the same checkpoint. Raises ValueError
        (writing nothing) for a line with a raw newline or carriage return, an empty
        line, a negative offset, or offsets out of order.
        """
        if not self.is_open:
            raise RuntimeError(f"{self._paths.prefix} is not open")
        if self._broken:
            raise RuntimeError(
                f"{self._paths.prefix}: an earlier write failed; close() and open() again"
            )
        _check(batch)
        fresh = [(offset, line) for offset, line in batch if offset > self._state.offset]
        offset = max(self._state.offset, through, fresh[-1][0] if fresh else -1)
        ledger = self._state.out if out is None else _out(out)
        if not fresh and offset == self._state.offset and ledger == self._state.out:
            return 0
        data = b"\n".join([line for _, line in fresh]) + b"\n" if fresh else b""
        try:
            if data:
                self._append(data)
            state = replace(
                self._state, offset=offset, length=self._state.length + len(data), out=ledger
            )
            atomic_replace(self._paths.checkpoint, state.to_bytes())
            self._state = state
            if state.length >= self.config.rotate_bytes:
                self._rotate()
        except BaseException:
            self._broken = True
            raise
        return len(fresh)

    def _append(self, data: bytes) -> None:
        if self._fd is None:
            self._fd = os.open(self._paths.live, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            fsync_dir(self.dir)  # the new live segment's entry, before a checkpoint names it
        view = memoryview(data)
        while view:  # one call unless the kernel writes short (e.g. disk nearly full)
            written = os.write(self._fd, view)
            view = view[written:]
        os.fsync(self._fd)

    def _rotate(self) -> None:
        state = self._state
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        os.replace(self._paths.live, self._paths.segment(state.segment))
        fsync_dir(self.dir)
        state = replace(state, length=0, segment=state.segment + 1)
        atomic_replace(self._paths.checkpoint, state.to_bytes())
        self._state = state


def _check(batch: Sequence[tuple[int, bytes]]) -> None:
    """Raise ValueError for a negative offset, offsets out of order, an empty line or a
    line holding a raw newline or carriage return. The common case (nothing wrong) is
    decided on the batch as a whole, by C loops; a failure is then located line by line."""
    offsets = [offset for offset, _ in batch]
    lines = [line for _, line in batch]
    joined = b"\n".join(lines)
    if (
        (not offsets or offsets[0] >= 0)
        and offsets == sorted(offsets)
        and all(lines)
        and joined.count(b"\n") == len(lines) - 1
        and b"\r" not in joined
    ):
        return
    previous = -1
    for offset, line in batch:
        if offset < 0:
            raise ValueError(f"negative source offset {offset}")
        if offset < previous:
            raise ValueError(f"offsets out of order: {offset} after {previous}")
        previous = offset
        if not line:
            raise ValueError(f"empty line at offset {offset}")
        if b"\n" in line or b"\r" in line:
            raise ValueError(f"line at offset {offset} contains a raw newline")


def _out(out: Mapping[tuple[str, int], int]) -> tuple[tuple[str, int, int], ...]:
    return tuple(sorted((topic, partition, next_offset)
                        for (topic, partition), next_offset in out.items()))


def read_lines(dir: Path, config: ChannelConfig, partition: int) -> list[bytes]:
    """All committed lines of one partition of a channel, in order, each whole.

    Completed segments in order, then the live segment up to the checkpoint's length.
    Safe while a writer is appending or rotating: the result is then a prefix of what
    is committed (never a duplicate, never a partial line).
    """
    paths = _Paths.of(Path(dir), config, partition)
    try:
        live_fd: int | None = os.open(paths.live, os.O_RDONLY)
    except FileNotFoundError:
        live_fd = None
    try:
        # Opened before the checkpoint is read and the segments are listed: if the writer
        # rotates meanwhile, the inode we hold shows up among the segments and its content
        # is read there, once.
        checkpoint = _read_checkpoint(paths) or Checkpoint()
        segments = paths.segments()
        chunks: list[bytes] = []
        seen: set[tuple[int, int]] = set()
        for _, path in segments:
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                seen.add((st.st_dev, st.st_ino))
                chunks.append(f.read())
        if live_fd is not None:
            st = os.fstat(live_fd)
            if (st.st_dev, st.st_ino) not in seen and checkpoint.length > 0:
                with os.fdopen(os.dup(live_fd), "rb") as f:
                    live = f.read(checkpoint.length)
                if len(live) < checkpoint.length:
                    raise PartitionStateError(
                        f"{paths.live} holds {len(live)} bytes, the checkpoint committed "
                        f"{checkpoint.length}"
                    )
                chunks.append(live)
    finally:
        if live_fd is not None:
            os.close(live_fd)
    lines: list[bytes] = []
    for chunk in chunks:
        if not chunk:
            continue
        if not chunk.endswith(b"\n"):
            raise PartitionStateError(f"{paths.prefix}: committed data ends mid-line")
        lines.extend(chunk[:-1].split(b"\n"))
    return lines
