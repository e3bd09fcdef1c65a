"""The Dockerfile's promises, read from the file (no Docker engine builds it here):
the final stage installs the wheel a build stage made, not the source tree; it runs
as a user that is not root and owns /data; its HEALTHCHECK asks /health on the
worker's port (ENGINESTREAM_WEB_PORT), and that command passes on 200 and fails on
503 or when nothing answers."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.worker_process import free_port

ROOT = Path(__file__).resolve().parents[3]
ROOT_USERS = {"root", "0"}


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: its keyword (upper case) and the rest of it."""

    keyword: str
    args: str


def instructions(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile, continuation lines joined, comments dropped."""
    found: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        found.append(Instruction(keyword.upper(), args.strip()))
        pending = ""
    assert not pending, f"the Dockerfile ends inside a continued line: {pending!r}"
    return found


def stages(found: list[Instruction]) -> list[list[Instruction]]:
    """The instructions split into stages, each starting with its FROM."""
    split: list[list[Instruction]] = []
    for instruction in found:
        if instruction.keyword == "FROM":
            split.append([])
        assert split, f"{instruction.keyword} before the first FROM"
        split[-1].append(instruction)
    return split


def of(stage: list[Instruction], keyword: str) -> list[str]:
    """The arguments of every `keyword` instruction of a stage."""
    return [i.args for i in stage if i.keyword == keyword]


@pytest.fixture(scope="module")
def all_stages() -> list[list[Instruction]]:
    return stages(instructions((ROOT / "Dockerfile").read_text()))


@pytest.fixture(scope="module")
def final(all_stages: list[list[Instruction]]) -> list[Instruction]:
    return all_stages[-1]


def build_stage_names(all_stages: list[list[Instruction]]) -> set[str]:
    """The names (FROM ... AS name) of the stages before the final one that make a wheel."""
    names = set()
    for stage in all_stages[:-1]:
        named = re.search(r"\bAS\s+(\S+)", stage[0].args, re.IGNORECASE)
        if named and any("pip wheel" in run for run in of(stage, "RUN")):
            names.add(named.group(1))
    return names


def runtime_user(final: list[Instruction]) -> str:
    """The user the final stage's command runs as (its last USER)."""
    users = of(final, "USER")
    assert users, "the final stage has no USER: the worker would run as root"
    return users[-1].split(":")[0]


def healthcheck_command(final: list[Instruction]) -> list[str]:
    """The final stage's HEALTHCHECK command, in exec form."""
    checks = of(final, "HEALTHCHECK")
    assert len(checks) == 1, checks
    _, cmd, exec_form = checks[0].partition("CMD ")
    assert cmd, f"HEALTHCHECK without CMD: {checks[0]}"
    command = json.loads(exec_form)
    assert isinstance(command, list), exec_form
    return [str(part) for part in command]


# ------------------------------------------------------------------------ stages --


def test_a_build_stage_makes_the_wheel(all_stages: list[list[Instruction]]) -> None:
    assert len(all_stages) >= 2, "one stage: the image would carry the build"
    assert build_stage_names(all_stages), "no named stage runs `pip wheel`"


def test_the_final_stage_installs_that_wheel(
    all_stages: list[list[Instruction]], final: list[Instruction]
) -> None:
    copied_from = {m.group(1) for c in of(final, "COPY") if (m := re.search(r"--from=(\S+)", c))}
    assert copied_from & build_stage_names(all_stages), "nothing copied from the build stage"
    installs = [r for r in of(final, "RUN") if "pip install" in r]
    assert installs, "the final stage installs nothing"
    assert all(re.search(r"\S+\.whl\b", r) for r in installs), installs
    # The wheel alone is the SDK; the image runs the worker, so it needs the extra.
    assert any(re.search(r"\.whl\)?\[worker\]", r) for r in installs), installs


def test_the_final_stage_holds_no_source_tree(final: list[Instruction]) -> None:
    from_context = [c for c in of(final, "COPY") + of(final, "ADD") if "--from=" not in c]
    assert from_context == [], "the final stage copies from the build context"
    for run in of(final, "RUN"):
        assert not re.search(r"pip install\b.*(\s-e\s|\s['\"]?\.(\s|$|\[))", run), run


# -------------------------------------------------------------------------- user --


def test_the_worker_runs_as_a_user_that_is_not_root(final: list[Instruction]) -> None:
    user = runtime_user(final)
    assert user not in ROOT_USERS
    made = rf"useradd\b[^&;]*\s{re.escape(user)}(?=\s|$|[&;])"
    assert any(re.search(made, r) for r in of(final, "RUN")), f"no useradd of {user}"
    # Instructions after USER run as that user; the command must not switch back.
    last_user = max(i for i, ins in enumerate(final) if ins.keyword == "USER")
    assert all(ins.keyword not in {"ENTRYPOINT", "CMD"} for ins in final[:last_user])


def test_data_is_owned_by_that_user_before_it_becomes_a_volume(final: list[Instruction]) -> None:
    user = runtime_user(final)
    chown = [
        i
        for i, ins in enumerate(final)
        if ins.keyword == "RUN" and re.search(rf"chown\s+{re.escape(user)}\S*\s+/data\b", ins.args)
    ]
    assert chown, "/data is not given to the runtime user"
    # Changes to a volume's directory after VOLUME are discarded by the build.
    volume = [i for i, ins in enumerate(final) if ins.keyword == "VOLUME" and "/data" in ins.args]
    assert volume and volume[0] > chown[0]
    assert "ENGINESTREAM_DATA_DIR=/data" in " ".join(of(final, "ENV"))


# ------------------------------------------------------------------- healthcheck --


def test_the_healthcheck_asks_health_on_the_web_port(final: list[Instruction]) -> None:
    command = healthcheck_command(final)
    assert command[0] == "python", "the slim image has no curl"
    script = command[-1]
    assert "/health" in script and "ENGINESTREAM_WEB_PORT" in script
    port = re.search(r"ENGINESTREAM_WEB_PORT=(\d+)", " ".join(of(final, "ENV")))
    assert port is not None and of(final, "EXPOSE") == [port.group(1)]


class Answer(BaseHTTPRequestHandler):
    """Answers /health with the server's `health_status`, anything else with 404."""

    def do_GET(self) -> None:
        status = getattr(self.server, "health_status", 500) if self.path == "/health" else 404
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"ready": true}' if status == 200 else b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def run_healthcheck(final: list[Instruction], port: int) -> int:
    """Exit code of the HEALTHCHECK command run here with ENGINESTREAM_WEB_PORT=port."""
    command = healthcheck_command(final)
    result = subprocess.run(
        [sys.executable, *command[1:]],
        env={"ENGINESTREAM_WEB_PORT": str(port)},
        capture_output=True,
        timeout=30,
    )
    return result.returncode


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_the_healthcheck_follows_the_health_view(
    final: list[Instruction], health_server: ThreadingHTTPServer, status: int, healthy: bool
) -> None:
    health_server.health_status = status  # type: ignore[attr-defined]
    code = run_healthcheck(final, health_server.server_address[1])
    assert (code == 0) is healthy, code


def test_the_healthcheck_fails_when_nothing_answers(final: list[Instruction]) -> None:
    assert run_healthcheck(final, free_port()) != 0
