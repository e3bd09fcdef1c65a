"""Exactly-once JSONL partition files: crash between every step, recover, redeliver.

The crash tests run a scripted sequence of writes (with redeliveries and, through a
tiny ``rotate_bytes``, several rotations) and stop it at step N — every call of
``os.write``, ``os.fsync``, ``os.replace``, ``os.ftruncate`` and ``atomic_replace``
made by the sink, for N = 0..k. Two ways to stop: raising an exception (the unwinding
runs ``finally`` blocks, like an error would), and SIGKILL of a forked child (nothing
runs, like the OOM killer). Then the partition is reopened, the source is redelivered
from an earlier offset, and the files must hold every line exactly once, whole, in
offset order. (Power loss is argued in streams/durable/filesink.py, not simulated here.)
"""

from __future__ import annotations

import contextlib
import errno
import json
import multiprocessing
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.config.channels import ChannelConfig
from streams.durable import atomic, filesink
from streams.durable.filesink import (
    PartitionFile,
    PartitionLocked,
    PartitionStateError,
    read_lines,
)

FORK = multiprocessing.get_context("fork")
CONFIG = ChannelConfig(name="events", filename="events.jsonl", rotate_bytes=60)
PARTITION = 3

# The source partition: offset -> the lines of the message at that offset (a message
# may carry several records).
SOURCE: dict[int, list[bytes]] = {
    o: [json.dumps({"o": o, "k": k, "pad": "x" * (o % 5)}).encode() for k in range(1 + o % 3)]
    for o in range(24)
}
# Batches as delivered: half-open offset ranges; overlaps are redeliveries.
SCRIPT: list[tuple[int, int]] = [
    (0, 1),
    (1, 3),
    (3, 4),
    (2, 6),  # 2..3 again
    (6, 7),
    (6, 7),  # all again
    (7, 10),
    (10, 11),
    (0, 12),  # from the start
    (12, 15),
    (15, 16),
    (16, 20),
    (20, 24),
]


def items(start: int, end: int) -> list[tuple[int, bytes]]:
    return [(o, line) for o in range(start, end) for line in SOURCE[o]]


def expected(upto: int = max(SOURCE)) -> list[bytes]:
    """Every line of offsets 0..upto, once, in order."""
    return [line for _, line in items(0, upto + 1)]


ALL_LINES = expected()


class SimulatedCrash(BaseException):
    """Not an Exception: nothing in the code under test may swallow it."""


class StepOs:
    """Stands in for the `os` module inside the sink: counts (and crashes at) steps."""

    STEPS = ("write", "fsync", "replace", "ftruncate")

    def __init__(self, crash_at: int | None, crash: Callable[[], None]) -> None:
        self.crash_at = crash_at
        self.crash = crash
        self.count = 0
        self.names: list[str] = []

    def step(self, name: str) -> None:
        if self.count == self.crash_at:
            self.crash()
        self.count += 1
        self.names.append(name)

    def __getattr__(self, name: str) -> Any:
        real = getattr(os, name)
        if name not in self.STEPS:
            return real

        def stepped(*args: Any, **kwargs: Any) -> Any:
            self.step(name)
            if name == "fsync":
                # A process crash keeps the page cache, so the flush itself cannot change
                # what recovery sees; skipping it keeps the matrix fast. Its position in
                # the sequence is still a crash point.
                return None
            return real(*args, **kwargs)

        return stepped


@contextlib.contextmanager
def steps(crash_at: int | None, crash: Callable[[], None]) -> Iterator[StepOs]:
    """Route the sink's (and atomic_replace's) step functions through a StepOs."""
    stepper = StepOs(crash_at, crash)
    real_replace = filesink.atomic_replace

    def stepped_atomic_replace(path: Path, data: bytes) -> None:
        stepper.step("atomic_replace")
        real_replace(path, data)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(filesink, "os", stepper)
        mp.setattr(atomic, "os", stepper)
        mp.setattr(filesink, "atomic_replace", stepped_atomic_replace)
        yield stepper


def raise_crash() -> None:
    raise SimulatedCrash


def sigkill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def run_script(directory: Path) -> None:
    pf = PartitionFile(directory, CONFIG, PARTITION)
    pf.open()
    try:
        for start, end in SCRIPT:
            pf.write(items(start, end))
    finally:
        pf.close()


def checkpoint_on_disk(directory: Path) -> dict[str, int] | None:
    path = directory / f"events.p{PARTITION}.checkpoint.json"
    return json.loads(path.read_bytes()) if path.exists() else None


def live(directory: Path) -> Path:
    return directory / f"events.p{PARTITION}.jsonl"


def redeliver(pf: PartitionFile, start: int, group: int) -> None:
    """Deliver offsets start.. in batches of `group` offsets."""
    for first in range(start, max(SOURCE) + 1, group):
        pf.write(items(first, min(first + group, max(SOURCE) + 1)))


def assert_whole_lines(lines: list[bytes]) -> None:
    for line in lines:
        json.loads(line)


def recover_and_check(directory: Path, variant: int) -> None:
    """After a crash: the reader sees a committed prefix; open() cuts everything past
    the checkpoint; redelivery from an earlier offset completes the files exactly."""
    with steps(None, raise_crash):  # no crash; fsync skipped for speed, as in the crash run
        _recover_and_check(directory, variant)


def _recover_and_check(directory: Path, variant: int) -> None:
    before = checkpoint_on_disk(directory)
    committed = before["offset"] if before else -1
    assert read_lines(directory, CONFIG, PARTITION) == expected(committed)

    pf = PartitionFile(directory, CONFIG, PARTITION)
    pf.open()
    try:
        assert pf.last_offset == committed
        size = live(directory).stat().st_size if live(directory).exists() else 0
        assert size == pf.checkpoint.length  # nothing beyond the checkpoint survived
        assert pf.checkpoint.length < CONFIG.rotate_bytes  # an owed rotation was done
        assert checkpoint_on_disk(directory) == {
            "offset": pf.checkpoint.offset,
            "length": pf.checkpoint.length,
            "segment": pf.checkpoint.segment,
        }
        assert read_lines(directory, CONFIG, PARTITION) == expected(committed)
        assert not [p for p in os.listdir(directory) if p.endswith(".tmp")]

        back = (0, 1, 3, 100)[variant % 4]  # how far before the checkpoint to redeliver
        redeliver(pf, max(0, committed + 1 - back), group=1 + variant % 3)
        assert pf.last_offset == max(SOURCE)
    finally:
        pf.close()
    lines = read_lines(directory, CONFIG, PARTITION)
    assert lines == ALL_LINES
    assert_whole_lines(lines)


def count_steps(directory: Path) -> StepOs:
    with steps(None, raise_crash) as stepper:
        run_script(directory)
    return stepper


@pytest.fixture(scope="module")
def script_steps(tmp_path_factory: pytest.TempPathFactory) -> StepOs:
    directory = tmp_path_factory.mktemp("dry-run")
    stepper = count_steps(directory)
    assert read_lines(directory, CONFIG, PARTITION) == ALL_LINES
    segments = sorted(p for p in os.listdir(directory) if p.endswith(".jsonl"))
    assert len(segments) >= 5, segments  # the script does rotate, several times
    assert {"write", "fsync", "replace", "atomic_replace"} <= set(stepper.names)
    return stepper


# -- the crash matrix ------------------------------------------------------------------


def test_crash_by_exception_at_every_step(tmp_path: Path, script_steps: StepOs) -> None:
    for n in range(script_steps.count + 1):
        directory = tmp_path / f"n{n}"
        with steps(n, raise_crash) as stepper:
            if n < script_steps.count:
                with pytest.raises(SimulatedCrash):
                    run_script(directory)
            else:
                run_script(directory)
        assert stepper.count == min(n, script_steps.count)
        recover_and_check(directory, n)


def _run_script_killed_at(directory: Path, n: int) -> None:
    with steps(n, sigkill_self):
        run_script(directory)
    os._exit(0)


def test_crash_by_sigkill_at_every_step(tmp_path: Path, script_steps: StepOs) -> None:
    for n in range(script_steps.count + 1):
        directory = tmp_path / f"n{n}"
        child = FORK.Process(target=_run_script_killed_at, args=(directory, n))
        child.start()
        child.join(10)
        want = -signal.SIGKILL if n < script_steps.count else 0
        assert child.exitcode == want, (n, child.exitcode)
        recover_and_check(directory, n)


def test_crash_during_recovery(tmp_path: Path, script_steps: StepOs) -> None:
    """A crash at any step of open()'s own recovery is recovered by the next open()."""
    exercised = 0
    for n in range(script_steps.count):
        crashed = tmp_path / f"n{n}"
        with steps(n, raise_crash), pytest.raises(SimulatedCrash):
            run_script(crashed)
        # how many steps does recovering this state take?
        probe = tmp_path / f"n{n}-probe"
        shutil.copytree(crashed, probe)
        probing = PartitionFile(probe, CONFIG, PARTITION)
        with steps(None, raise_crash) as stepper:
            probing.open()
        probing.close()
        for m in range(stepper.count):
            exercised += 1
            directory = tmp_path / f"n{n}-m{m}"
            shutil.copytree(crashed, directory)
            pf = PartitionFile(directory, CONFIG, PARTITION)
            with steps(m, raise_crash), pytest.raises(SimulatedCrash):
                pf.open()
            assert not pf.is_open
            recover_and_check(directory, n + m)
    assert exercised > 20


# -- recovery cases by hand ------------------------------------------------------------


def opened(directory: Path, config: ChannelConfig = CONFIG, partition: int = 0) -> PartitionFile:
    pf = PartitionFile(directory, config, partition)
    pf.open()
    return pf


BIG = ChannelConfig(name="events", filename="events.jsonl")


def test_torn_tail_is_truncated_on_open(tmp_path: Path) -> None:
    pf = opened(tmp_path, BIG)
    assert pf.write([(0, b'{"a":0}'), (1, b'{"a":1}')]) == 2
    pf.close()
    path = tmp_path / "events.p0.jsonl"
    committed = path.read_bytes()
    with open(path, "ab") as f:
        f.write(b'{"a":2,"half')  # a torn write
    assert read_lines(tmp_path, BIG, 0) == [b'{"a":0}', b'{"a":1}']
    pf = opened(tmp_path, BIG)
    assert path.read_bytes() == committed
    assert pf.last_offset == 1
    assert pf.write([(1, b'{"a":1}'), (2, b'{"a":2}')]) == 1
    pf.close()
    assert read_lines(tmp_path, BIG, 0) == [b'{"a":0}', b'{"a":1}', b'{"a":2}']
    assert path.read_bytes() == b'{"a":0}\n{"a":1}\n{"a":2}\n'


def test_whole_uncommitted_lines_are_truncated_too(tmp_path: Path) -> None:
    pf = opened(tmp_path, BIG)
    pf.write([(0, b"0")])
    pf.close()
    with open(tmp_path / "events.p0.jsonl", "ab") as f:
        f.write(b"1\n2\n")  # written, never checkpointed
    pf = opened(tmp_path, BIG)
    pf.close()
    assert (tmp_path / "events.p0.jsonl").read_bytes() == b"0\n"


def test_live_shorter_than_checkpoint_is_an_error(tmp_path: Path) -> None:
    pf = opened(tmp_path, BIG)
    pf.write([(0, b"abc"), (1, b"def")])
    pf.close()
    path = tmp_path / "events.p0.jsonl"
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(PartitionStateError, match="lost"):
        opened(tmp_path, BIG)
    path.unlink()
    # (not PartitionLocked: the failed open above released the lock)
    with pytest.raises(PartitionStateError, match="missing"):
        opened(tmp_path, BIG)


def test_data_without_checkpoint_is_refused(tmp_path: Path) -> None:
    (tmp_path / "events.p0.jsonl").write_bytes(b"foreign\n")
    with pytest.raises(PartitionStateError, match=r"checkpoint\.json is missing"):
        opened(tmp_path, BIG)
    assert (tmp_path / "events.p0.jsonl").read_bytes() == b"foreign\n"


def test_interrupted_rotation_is_finished(tmp_path: Path) -> None:
    config = ChannelConfig(name="e", filename="events.jsonl", rotate_bytes=10)
    pf = opened(tmp_path, config)
    pf.write([(0, b"12345"), (1, b"67890")])  # 12 bytes: rotated to segment 0
    assert pf.checkpoint.segment == 1
    pf.write([(2, b"abc")])
    pf.close()
    # Rename done, checkpoint not: what a crash between steps 4 and 6 leaves.
    os.replace(tmp_path / "events.p0.jsonl", tmp_path / "events.p0.000001.jsonl")
    assert read_lines(tmp_path, config, 0) == [b"12345", b"67890", b"abc"]
    pf = opened(tmp_path, config)
    assert pf.checkpoint.segment == 2 and pf.checkpoint.length == 0
    assert pf.write([(2, b"abc"), (3, b"d")]) == 1
    pf.close()
    assert read_lines(tmp_path, config, 0) == [b"12345", b"67890", b"abc", b"d"]
    assert sorted(os.listdir(tmp_path)) == [
        "events.p0.000000.jsonl",
        "events.p0.000001.jsonl",
        "events.p0.checkpoint.json",
        "events.p0.jsonl",
        "events.p0.lock",
    ]


def test_stale_checkpoint_temp_files_are_removed(tmp_path: Path) -> None:
    opened(tmp_path, BIG).close()
    stale = tmp_path / ".events.p0.checkpoint.json.abc123.tmp"
    stale.write_bytes(b"{")
    opened(tmp_path, BIG).close()
    assert not stale.exists()


# -- writing ---------------------------------------------------------------------------


def test_files_and_checkpoint_layout(tmp_path: Path) -> None:
    config = ChannelConfig(name="cmp", filename="comparisons.jsonl", rotate_bytes=8)
    with PartitionFile(tmp_path, config, 7) as pf:
        assert pf.last_offset == -1
        assert pf.write([(5, b'{"x":1}'), (5, b'{"x":2}')]) == 2
        assert pf.write([(9, b"[]")]) == 1
    assert json.loads((tmp_path / "comparisons.p7.checkpoint.json").read_bytes()) == {
        "offset": 9,
        "length": 3,
        "segment": 1,
    }
    assert (tmp_path / "comparisons.p7.000000.jsonl").read_bytes() == b'{"x":1}\n{"x":2}\n'
    assert (tmp_path / "comparisons.p7.jsonl").read_bytes() == b"[]\n"
    assert read_lines(tmp_path, config, 7) == [b'{"x":1}', b'{"x":2}', b"[]"]


def test_one_os_write_per_batch(tmp_path: Path) -> None:
    pf = opened(tmp_path, BIG)
    with steps(None, raise_crash) as stepper:
        pf.write(items(0, 10))
    pf.close()
    assert stepper.names.count("write") == 1


def test_redeliveries_are_skipped(tmp_path: Path) -> None:
    pf = opened(tmp_path, BIG)
    assert pf.write(items(0, 4)) == len(items(0, 4))
    assert pf.write(items(0, 4)) == 0
    assert pf.write(items(2, 6)) == len(items(4, 6))
    assert pf.write([]) == 0
    assert pf.last_offset == 5
    pf.close()
    pf = opened(tmp_path, BIG)
    assert pf.last_offset == 5
    assert pf.write(items(0, 7)) == len(items(6, 7))
    pf.close()
    assert read_lines(tmp_path, BIG, 0) == expected(6)


@pytest.mark.parametrize(
    "batch",
    [
        [(0, b"ok"), (1, b'{"a":\n1}')],
        [(0, b'{"a":\r1}')],
        [(0, b"ok"), (1, b"")],
        [(2, b"ok"), (1, b"ok")],
        [(-1, b"ok")],
        [(0, b"a\n"), (1, b"b")],  # a newline where the join would put one
        [(0, b"ok"), (0, b"ok"), (5, b"ok\r")],
        [(3, b"ok"), (-1, b"ok")],
    ],
)
def test_bad_batches_write_nothing(tmp_path: Path, batch: list[tuple[int, bytes]]) -> None:
    pf = opened(tmp_path, BIG)
    with pytest.raises(ValueError):
        pf.write(batch)
    assert pf.write([(0, b"fine")]) == 1
    pf.close()
    assert read_lines(tmp_path, BIG, 0) == [b"fine"]


def disk_full() -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_write_after_a_failure_needs_a_reopen(tmp_path: Path) -> None:
    pf = opened(tmp_path, BIG)
    pf.write([(0, b"a")])
    with steps(0, disk_full), pytest.raises(OSError):
        pf.write([(1, b"b")])
    with pytest.raises(RuntimeError, match="open"):
        pf.write([(1, b"b")])
    pf.close()
    pf.open()
    assert pf.write([(1, b"b")]) == 1
    pf.close()
    assert read_lines(tmp_path, BIG, 0) == [b"a", b"b"]


def test_partitions_and_channels_are_independent(tmp_path: Path) -> None:
    other = ChannelConfig(name="dl", filename="dead_letters.jsonl")
    with (
        PartitionFile(tmp_path, BIG, 0) as p0,
        PartitionFile(tmp_path, BIG, 1) as p1,
        PartitionFile(tmp_path, other, 0) as d0,
    ):
        p0.write([(0, b"p0")])
        p1.write([(0, b"p1")])
        d0.write([(0, b"d0")])
    assert read_lines(tmp_path, BIG, 0) == [b"p0"]
    assert read_lines(tmp_path, BIG, 1) == [b"p1"]
    assert read_lines(tmp_path, other, 0) == [b"d0"]
    assert read_lines(tmp_path, BIG, 2) == []
    assert read_lines(tmp_path / "nowhere", BIG, 0) == []


def test_read_lines_during_rotations_never_duplicates(tmp_path: Path) -> None:
    """A reader racing a writer that rotates often sees a committed prefix each time."""
    config = ChannelConfig(name="e", filename="events.jsonl", rotate_bytes=40)

    def writer() -> None:
        with PartitionFile(tmp_path, config, 0) as pf:
            for o in range(max(SOURCE) + 1):
                pf.write(items(o, o + 1))
        os._exit(0)

    opened(tmp_path, config).close()  # the checkpoint exists before the race
    child = FORK.Process(target=writer)
    child.start()
    seen = 0
    while child.is_alive() or seen == 0:
        lines = read_lines(tmp_path, config, 0)
        assert lines == ALL_LINES[: len(lines)]
        seen += 1
    child.join(10)
    assert child.exitcode == 0
    assert read_lines(tmp_path, config, 0) == ALL_LINES


# -- the lock --------------------------------------------------------------------------


def _try_open(directory: Path, config: ChannelConfig, timeout: float) -> None:
    pf = PartitionFile(directory, config, 0)
    try:
        pf.open(timeout=timeout)
    except PartitionLocked:
        os._exit(3)
    pf.close()
    os._exit(0)


def _child_can_open(directory: Path, config: ChannelConfig, timeout: float = 0.0) -> bool:
    child = FORK.Process(target=_try_open, args=(directory, config, timeout))
    child.start()
    child.join(10)
    assert child.exitcode in (0, 3)
    return child.exitcode == 0


def test_second_process_cannot_open_while_first_is_open(tmp_path: Path) -> None:
    pf = opened(tmp_path, BIG)
    started = time.monotonic()
    assert not _child_can_open(tmp_path, BIG, timeout=0.2)
    assert time.monotonic() - started >= 0.2
    pf.close()
    assert _child_can_open(tmp_path, BIG)
    pf.open()  # and back in this process
    pf.close()


def _hold_lock(directory: Path, config: ChannelConfig, ready: Any, seconds: float) -> None:
    pf = PartitionFile(directory, config, 0)
    pf.open()
    ready.set()
    time.sleep(seconds)
    pf.close()
    os._exit(0)


def test_killed_holder_releases_the_lock(tmp_path: Path) -> None:
    ready = FORK.Event()
    holder = FORK.Process(target=_hold_lock, args=(tmp_path, BIG, ready, 60))
    holder.start()
    assert ready.wait(10)
    with pytest.raises(PartitionLocked):
        opened(tmp_path, BIG)
    assert holder.pid is not None
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(10)
    opened(tmp_path, BIG).close()


def test_open_waits_up_to_timeout_for_the_lock(tmp_path: Path) -> None:
    ready = FORK.Event()
    holder = FORK.Process(target=_hold_lock, args=(tmp_path, BIG, ready, 0.3))
    holder.start()
    assert ready.wait(10)
    pf = PartitionFile(tmp_path, BIG, 0)
    pf.open(timeout=10)
    pf.close()
    holder.join(10)


# -- config ----------------------------------------------------------------------------


def test_channel_config_defaults_and_validation() -> None:
    config = ChannelConfig(name="events", filename="events.jsonl")
    assert (config.enabled, config.buffer_size, config.auto_flush_seconds) == (True, 500, 1.0)
    assert config.rotate_bytes == 64 * 1024 * 1024
    assert config.stem == "events"
    for bad in ("events.json", ".jsonl", "a/b.jsonl", ".hidden.jsonl"):
        with pytest.raises(ValueError):
            ChannelConfig(name="x", filename=bad)
    with pytest.raises(ValueError):
        ChannelConfig(name="x", filename="x.jsonl", rotate_bytes=0)
    with pytest.raises(ValueError):
        ChannelConfig(name="x", filename="x.jsonl", buffer_size=0)
    with pytest.raises(ValueError):
        PartitionFile(Path("."), config, -1)
