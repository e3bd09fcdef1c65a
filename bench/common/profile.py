"""py-spy profiles of a benchmark's worker: recording one (`--format raw`, collapsed
stacks) and summing it into categories.

Each sample is charged to one category: the one of the innermost frame that matches a
rule (rules are tried in order for each frame, from the leaf towards the root), so a
JSON decode called from an agent counts as that agent's. Samples of idle threads are
not in py-spy's output (it records only running ones).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

# (category, substrings of a frame "function (file:line)"), tried in this order.
Rules = tuple[tuple[str, tuple[str, ...]], ...]


def start_profiler(pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    """py-spy (a dev dependency) sampling `pid` into `out` until stopped with SIGINT;
    None when it is not installed."""
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        print("  (py-spy not installed: no profile)", flush=True)
        return None
    return subprocess.Popen(
        [str(spy), "record", "--pid", str(pid), "--rate", "250", "--format", "raw",
         "--nonblocking", "--threads", "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def stop_profiler(proc: subprocess.Popen[bytes] | None) -> None:
    """Stop py-spy; it writes its output on SIGINT."""
    if proc is None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


def categorize(frames: list[str], rules: Rules) -> str:
    """The category of one sample (frames root first)."""
    for frame in reversed(frames):
        for category, needles in rules:
            if any(n in frame for n in needles):
                return category
    return "other"


def summarize(path: Path, rules: Rules) -> tuple[int, Counter[str], Counter[str]]:
    """(samples, samples per category, samples per leaf frame) of a raw profile."""
    per_category: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        per_category[categorize(frames, rules)] += n
        leaves[frames[-1]] += n
    return total, per_category, leaves


def print_summary(path: Path, rules: Rules, top: int) -> None:
    """Print the categories and the `top` leaf frames of a profile."""
    total, per_category, leaves = summarize(path, rules)
    print(f"{total} samples (running threads only)")
    for category, n in per_category.most_common():
        print(f"{100 * n / total:5.1f}%  {category}")
    print(f"\ntop {top} leaf frames:")
    for frame, n in leaves.most_common(top):
        print(f"{100 * n / total:5.1f}%  {frame}")


def summary_main(prog: str, rules: Rules, argv: list[str] | None = None) -> None:
    """The command line of a benchmark's profile summary: `prog PROFILE.txt [--top N]`."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args(argv)
    print_summary(args.profile, rules, args.top)
