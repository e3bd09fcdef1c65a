"""The README and docs/*.md hold to what the product is, checked without a broker.

- Every `enginestream ...` command (code spans, and lines of shell blocks) names
  commands, subcommands and options the real command line has, and every `make X`
  a target of the Makefile; the command tables list every command, subcommand and
  global option of the command line and every Makefile target that `make help` shows.
- The documents never link outside the repository: a relative link points at a file
  of the checkout, and an http(s) address is an example one (loopback, private,
  placeholder or reserved example names), also inside code blocks.
- Every `ENGINESTREAM_*` variable the README names is one the code reads.
- The README's Prometheus list names every family GET /metrics exposes, and only those.

Each check is a function from Markdown text to a list of problems (one line each,
naming the document's words); the tests at the end feed them deliberately wrong lines
to show that they would fail.
"""

from __future__ import annotations

import ast
import ipaddress
import re
import shlex
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import urlsplit

import click
import pytest

from streams.cli_commands import cli
from streams.config.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
README = ROOT / "README.md"
DOCUMENTS = [README, *sorted((ROOT / "docs").glob("*.md"))]
MAKEFILE = ROOT / "Makefile"

# --- reading Markdown ---------------------------------------------------------------------

_FENCE = re.compile(r"^(```|~~~)[^\n]*\n.*?^\1[ \t]*$", re.M | re.S)
_FENCE_OPEN = re.compile(r"^(?:```|~~~)([\w-]*)[^\n]*\n(.*?)^(?:```|~~~)[ \t]*$", re.M | re.S)
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)


def without_fences(markdown: str) -> str:
    """The text outside fenced code blocks."""
    return _FENCE.sub("", markdown)


def prose(markdown: str) -> str:
    """The text outside fenced blocks and inline code spans."""
    return _CODE_SPAN.sub("", without_fences(markdown))


def code_spans(markdown: str) -> list[str]:
    """The inline code spans outside fenced blocks, stripped."""
    return [m.group(2).strip() for m in _CODE_SPAN.finditer(without_fences(markdown))]


def shell_lines(markdown: str) -> list[str]:
    """The commands of the fenced bash/sh/shell blocks: continuation lines joined,
    comments and blank lines left out."""
    lines: list[str] = []
    for match in _FENCE_OPEN.finditer(markdown):
        if match.group(1) not in ("bash", "sh", "shell", "console"):
            continue
        joined = match.group(2).replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def table_rows(markdown: str) -> Iterator[list[str]]:
    """The cells of every pipe-table row outside fenced blocks, headers included,
    separator rows left out (a `|` inside a code span does not split a cell)."""
    for line in without_fences(markdown).splitlines():
        line = line.strip()
        if not (line.startswith("|") and line.endswith("|")):
            continue
        masked = _CODE_SPAN.sub(lambda m: m.group(0).replace("|", "\0"), line)
        cells = [c.strip().replace("\0", "|") for c in masked[1:-1].split("|")]
        if all(re.fullmatch(r":?-+:?", c) for c in cells):
            continue
        yield cells


def command_table_cells(markdown: str) -> list[str]:
    """The code spans of the first column of the tables whose header's first cell is
    `command`: the commands the README offers its readers."""
    found: list[str] = []
    in_table = False
    previous_was_row = False
    for line in without_fences(markdown).splitlines():
        is_row = line.strip().startswith("|")
        if is_row and not previous_was_row:  # a table's header
            first = next(table_rows(line), [""])[0].lower()
            in_table = first == "command"
        elif is_row and in_table:
            rows = list(table_rows(line))
            if rows:
                found += code_spans(rows[0][0])
        previous_was_row = is_row
    return found


# --- commands ------------------------------------------------------------------------------


def command_words(text: str) -> list[str] | None:
    """The words of `text` when it runs `enginestream` or `make` (after any VAR=value
    assignments and a `.venv/bin/` path), else None."""
    try:
        words = shlex.split(text)
    except ValueError:
        return None
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        words = words[1:]
    if not words:
        return None
    program = words[0].removeprefix(".venv/bin/")
    if program not in ("enginestream", "make"):
        return None
    return [program, *words[1:]]


def _option(command: click.Command, name: str) -> click.Parameter | None:
    for param in command.params:
        if isinstance(param, click.Option) and name in (*param.opts, *param.secondary_opts):
            return param
    return None


def cli_problem(words: list[str], root: click.Command = cli) -> str | None:
    """Why `enginestream ...` (as `words`) is not a command line of `root`, or None.

    Subcommands are looked up group by group; an option must belong to the command
    it follows (global options come before the subcommand); a word after a command
    that is not a group must be one of its arguments."""
    command = root
    path = ["enginestream"]
    context = click.Context(root)
    arguments = 0
    rest = words[1:]
    i = 0
    while i < len(rest):
        word = rest[i]
        i += 1
        if word in ("-h", "--help"):
            continue
        if word.startswith("-"):
            name, _, attached = word.partition("=")
            option = _option(command, name)
            if option is None:
                return f"`{' '.join(words)}`: `{' '.join(path)}` has no option {name}"
            if getattr(option, "is_flag", False) or getattr(option, "count", False):
                continue
            if not attached and i < len(rest):
                attached = rest[i]
                i += 1  # its value
            choices = getattr(option.type, "choices", None)
            # An option named without its value (in a sentence) is not judged on one.
            if choices and attached and attached.lower() not in [str(c).lower() for c in choices]:
                return f"`{' '.join(words)}`: {name} takes one of {', '.join(map(str, choices))}"
            continue
        if isinstance(command, click.Group) and not arguments:
            sub = command.get_command(context, word)
            if sub is None:
                return f"`{' '.join(words)}`: `{' '.join(path)}` has no command {word!r}"
            command = sub
            path.append(word)
            continue
        arguments += 1
        if not any(isinstance(p, click.Argument) for p in command.params):
            return f"`{' '.join(words)}`: `{' '.join(path)}` takes no argument {word!r}"
    return None


def make_targets(makefile: str) -> dict[str, str]:
    """Every target of `makefile` by name, with its `## help` text ("" without)."""
    targets: dict[str, str] = {}
    for line in makefile.splitlines():
        match = re.match(r"^([A-Za-z0-9][\w.-]*(?:\s+[A-Za-z0-9][\w.-]*)*)\s*:(?![:=])(.*)$", line)
        if match is None or match.group(1).startswith("."):
            continue
        help_text = match.group(2).split("##", 1)[1].strip() if "##" in match.group(2) else ""
        for name in match.group(1).split():
            if help_text or name not in targets:
                targets[name] = help_text
    return targets


def make_problem(words: list[str], targets: Mapping[str, str]) -> str | None:
    """Why `make ...` (as `words`) names a target the Makefile does not have, or None."""
    for word in words[1:]:
        if word.startswith("-") or "=" in word:
            continue  # an option, or a variable
        if word not in targets:
            return f"`{' '.join(words)}`: the Makefile has no target {word!r}"
    return None


def command_problems(markdown: str, makefile: str, root: click.Command = cli) -> list[str]:
    """Every `enginestream ...` and `make ...` of `markdown` (code spans and shell
    block lines) that the command line or the Makefile does not have."""
    targets = make_targets(makefile)
    problems = []
    for text in [*code_spans(markdown), *shell_lines(markdown)]:
        words = command_words(text)
        if words is None:
            continue
        problem = cli_problem(words, root) if words[0] == "enginestream" else make_problem(
            words, targets
        )
        if problem:
            problems.append(problem)
    return problems


def cli_commands(group: click.Group, prefix: str = "enginestream") -> Iterator[str]:
    """`enginestream X [Y]` for every command that is not a group, at any depth."""
    context = click.Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        assert command is not None
        if isinstance(command, click.Group):
            yield from cli_commands(command, f"{prefix} {name}")
        else:
            yield f"{prefix} {name}"


def table_completeness_problems(markdown: str, makefile: str, root: click.Group = cli) -> list[str]:
    """What the command tables of `markdown` leave out: a command or subcommand, a
    global option of the command line, a Makefile target with `## help`."""
    listed = command_table_cells(markdown)
    listed_words = [w for w in (command_words(cell) for cell in listed) if w]
    problems = []
    for command in cli_commands(root):
        wanted = command.split()
        if not any(words[: len(wanted)] == wanted for words in listed_words):
            problems.append(f"the command tables do not list `{command}`")
    for param in root.params:
        if isinstance(param, click.Option) and param.name != "help":
            long = next(o for o in param.opts if o.startswith("--"))
            if not any(words[0] == "enginestream" and long in words for words in listed_words):
                problems.append(f"the command tables do not list the option `enginestream {long}`")
    for target, help_text in make_targets(makefile).items():
        if help_text and not any(words == ["make", target] for words in listed_words):
            problems.append(f"the command tables do not list `make {target}`")
    return problems


# --- links ---------------------------------------------------------------------------------

_LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s)\]>\"'`]+")
# Reserved for examples and documentation (RFC 2606, RFC 6761).
_EXAMPLE_NAMES = {"localhost", "example.com", "example.net", "example.org"}
_EXAMPLE_SUFFIXES = (".example", ".test", ".invalid", ".localhost", ".example.com")


def is_example_host(netloc: str) -> bool:
    """Whether a URL's host is an example: loopback, unspecified or private addresses
    (including the documentation ranges), reserved example names, or a placeholder."""
    if any(c in netloc for c in "<{$"):
        return True
    host = netloc.rsplit("@", 1)[-1]
    host = host[1 : host.index("]")] if host.startswith("[") else host.split(":", 1)[0]
    host = host.lower().rstrip(".")
    if host in _EXAMPLE_NAMES or host.endswith(_EXAMPLE_SUFFIXES):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_unspecified


def link_problems(markdown: str, source: Path, root: Path = ROOT) -> list[str]:
    """Links of `markdown` (the document at `source`) that leave the repository:
    a link outside the checkout or to a missing file, or an address that is not an
    example one (anywhere, code blocks included)."""
    problems = []
    name = source.relative_to(root) if source.is_relative_to(root) else source
    for url in _URL.findall(markdown):
        scheme = url.split("://", 1)[0].lower()
        if scheme not in ("http", "https") or not is_example_host(urlsplit(url).netloc):
            problems.append(f"{name}: {url} is outside the repository")
    text = prose(markdown)
    for target in [*_LINK.findall(text), *_REFERENCE.findall(text)]:
        if "://" in target:
            continue  # judged above
        if re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", target):
            problems.append(f"{name}: link {target} is outside the repository")
            continue
        path = target.split("#", 1)[0]
        if not path:
            continue  # an anchor in the same document
        resolved = (source.parent / path).resolve()
        if not resolved.is_relative_to(root.resolve()):
            problems.append(f"{name}: link {target} points outside the repository")
        elif not resolved.exists():
            problems.append(f"{name}: link {target} points at a file that does not exist")
    return problems


# --- environment variables -----------------------------------------------------------------

_VARIABLE = re.compile(r"ENGINESTREAM_(?:[A-Z0-9_]|<[A-Z]+>)*\*?")


class _RecordingEnv(Mapping[str, str]):
    """An empty environment that remembers every name looked up in it."""

    def __init__(self) -> None:
        self.asked: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def variables_the_code_reads() -> set[str]:
    """The ENGINESTREAM_* names the settings look up, and the ones written whole as
    string constants anywhere in streams/ (read from os.environ or passed on)."""
    env = _RecordingEnv()
    Settings.from_env(env)
    names = {n for n in env.asked if n.startswith("ENGINESTREAM_")}
    constants: set[str] = set()
    for path in (ROOT / "streams").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                constants.add(node.value)
    return names | {n for n in constants if re.fullmatch(r"ENGINESTREAM_[A-Z0-9_]+", n)}


def variable_pattern(named: str) -> re.Pattern[str]:
    """A named variable as a pattern: `<CHANNEL>` stands for any name part and a
    trailing `*` for any ending."""
    pattern = re.escape(named.rstrip("*"))
    pattern = re.sub(r"<[A-Z]+>", "[A-Z0-9_]+", pattern)
    return re.compile(pattern + ("[A-Z0-9_]*" if named.endswith("*") else ""))


def variable_problems(markdown: str, known: set[str]) -> list[str]:
    """The ENGINESTREAM_* names of `markdown` that no variable in `known` matches."""
    problems = []
    for named in sorted(set(_VARIABLE.findall(markdown))):
        pattern = variable_pattern(named)
        if not any(pattern.fullmatch(name) for name in known):
            problems.append(f"README names {named}, which the code never reads")
    return problems


# --- metrics -------------------------------------------------------------------------------


def exposed_families() -> set[str]:
    """The family names GET /metrics answers, from a worker state that has every one
    (the unit tests' sample state)."""
    import asyncio

    from streams.web.prometheus import metrics_registry
    from tests.unit.web import metrics_sample_state as state

    registry, lag = metrics_registry(
        state.fake_app(state.consumer()),
        state.router_counters(),
        state.processor(),
        state.sinks(),
        clock=lambda: state.NOW,
    )
    asyncio.run(lag.refresh())
    names = set()
    for family in registry.collect():
        # prometheus_client names a counter family without its _total.
        names.add(family.name + "_total" if family.type == "counter" else family.name)
    return names


def metric_problems(markdown: str, exposed: set[str]) -> list[str]:
    """Differences between the metric names of `markdown` and the `exposed` families:
    every enginestream_* family named exactly, the others by name or by a `prefix_*`."""
    named = set(re.findall(r"\benginestream_[a-z0-9_]+", markdown))
    wildcards = [w[:-1] for w in re.findall(r"\b[a-z]+_\*", markdown)]
    problems = [f"README names metric {n}, which GET /metrics does not expose"
                for n in sorted(named - exposed)]
    for family in sorted(exposed - named):
        if family.startswith("enginestream_") or not (
            re.search(rf"\b{family}\b", markdown) or family.startswith(tuple(wildcards))
        ):
            problems.append(f"README does not name metric {family}")
    return problems


# --- the checks ----------------------------------------------------------------------------


def test_every_command_the_documents_name_exists() -> None:
    makefile = MAKEFILE.read_text()
    problems = [p for doc in DOCUMENTS for p in command_problems(doc.read_text(), makefile)]
    assert not problems, "\n".join(problems)


def test_the_command_tables_list_every_command_option_and_target() -> None:
    problems = table_completeness_problems(README.read_text(), MAKEFILE.read_text())
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_documents_never_link_outside_the_repository(document: Path) -> None:
    problems = link_problems(document.read_text(), document)
    assert not problems, "\n".join(problems)


def test_every_variable_the_readme_names_is_read_by_the_code() -> None:
    known = variables_the_code_reads()
    assert "ENGINESTREAM_WINDOW_GRACE" in known and "ENGINESTREAM_SINK_EVENTS_ENABLED" in known
    problems = variable_problems(README.read_text(), known)
    assert not problems, "\n".join(problems)


def test_the_metrics_list_names_every_family_exposed() -> None:
    exposed = exposed_families()
    assert "enginestream_messages_in_total" in exposed
    problems = metric_problems(README.read_text(), exposed)
    assert not problems, "\n".join(problems)


# --- the checks catch wrong lines ----------------------------------------------------------

FAKE_MAKEFILE = "run: $(STAMP)  ## the demo\ntest:  ## every test\n\t@true\n"


@pytest.mark.parametrize(
    "line",
    [
        "| `enginestream workers` | a command that does not exist |",
        "| `enginestream topics delete` | a subcommand that does not exist |",
        "| `enginestream fleet --speed 3` | an option fleet does not have |",
        "| `enginestream worker --version` | a global option after the subcommand |",
        "| `enginestream worker events.jsonl` | an argument worker does not take |",
        "| `enginestream export windows --format xlsx` | a value --format does not take |",
        "| `make deploy` | a target the Makefile does not have |",
        "```bash\nKAFKA_BOOTSTRAP_SERVERS=x \\\n  enginestream wrker\n```",
    ],
)
def test_a_wrong_command_line_is_reported(line: str) -> None:
    markdown = f"| command | does |\n|---|---|\n{line}\n"
    assert len(command_problems(markdown, FAKE_MAKEFILE)) == 1


def test_right_command_lines_are_not_reported() -> None:
    markdown = (
        "| command | does |\n|---|---|\n"
        "| `enginestream fleet --engines 20 --rate=500` | |\n"
        "| `enginestream export windows --format parquet --from 1 --to 2` | |\n"
        "| `enginestream replay events.jsonl --rate 5000` | |\n"
        "| `enginestream --help` | |\n| `make test PYTEST_ARGS=-q` | |\n"
        "`.venv/bin/enginestream topics create --help`, `make`\n"
    )
    assert command_problems(markdown, FAKE_MAKEFILE) == []


def test_a_table_that_leaves_out_a_command_is_reported() -> None:
    markdown = "| command | does |\n|---|---|\n| `enginestream worker` | |\n| `make run` | |\n"
    problems = table_completeness_problems(markdown, FAKE_MAKEFILE)
    assert "the command tables do not list `enginestream topics create`" in problems
    assert "the command tables do not list `make test`" in problems
    assert "the command tables do not list `make run`" not in problems


@pytest.mark.parametrize(
    "line",
    [
        "a [Faust](https://github.com/faust-streaming/faust) application",
        "see <https://kafka.apache.org/documentation/>",
        "see https://kafka.apache.org/documentation/ for more",
        "```bash\ncurl https://pypi.org/simple/enginestream/\n```",
        "the [contract](../shared/DESIGN.md)",
        "the [design](docs/no-such-page.md#failure-policy)",
        "![dashboard](docs/no-such-picture.png)",
        "[mail](mailto:team@enginestream.dev)",
    ],
)
def test_a_link_outside_the_repository_is_reported(line: str) -> None:
    assert len(link_problems(line, README)) == 1


def test_links_inside_the_repository_and_example_addresses_pass() -> None:
    markdown = (
        "[design](docs/design.md#event-time), [top](#enginestream), ![d](docs/dashboard.png)\n"
        "`curl http://127.0.0.1:6066/health` http://localhost:6066 "
        "`http://10.0.0.7:6066` `http://<web host>:<port>` http://b-1.example:9092\n"
    )
    assert link_problems(markdown, README) == []


def test_a_variable_the_code_does_not_read_is_reported() -> None:
    known = {"ENGINESTREAM_WINDOW_GRACE", "ENGINESTREAM_SINK_EVENTS_ENABLED"}
    assert variable_problems("`ENGINESTREAM_WINDOW_GRACE`", known) == []
    assert variable_problems("`ENGINESTREAM_SINK_<CHANNEL>_ENABLED`", known) == []
    assert variable_problems("`ENGINESTREAM_SINK_<CHANNEL>_*`", known) == []
    assert len(variable_problems("`ENGINESTREAM_WINDOW_GRACE_S` (0)", known)) == 1
    assert len(variable_problems("`ENGINESTREAM_SINK_<CHANNEL>_PATH`", known)) == 1


def test_a_metric_left_out_or_invented_is_reported() -> None:
    exposed = {"enginestream_a_total", "enginestream_b_seconds", "process_cpu_seconds_total"}
    assert metric_problems("`enginestream_a_total`, `enginestream_b_seconds`, `process_*`",
                           exposed) == []
    assert metric_problems("`enginestream_a_total`, `process_*`", exposed) == [
        "README does not name metric enginestream_b_seconds"
    ]
    assert len(metric_problems("`enginestream_a_total` `enginestream_b_seconds` "
                               "`enginestream_c_total`", exposed)) == 2
