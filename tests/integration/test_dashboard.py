"""The dashboard in headless Chromium against a real worker and a real broker.

A worker (windows of 5 s, idle timeout 2 s) gets a small synthetic fleet; once every
window is final and the counts stop moving, Chromium loads /dashboard, runs its
scripts (--virtual-time-budget) and dumps the DOM. Every SVG data point must equal the
JSON views: the latency percentiles and success rate of each engine's windows (the
exact /engines/{id}/windows query a chart names in its data-* attributes), the dead
letters by reason of /stats, and the other bar charts and the engine table. A
screenshot is kept in test-artifacts/dashboard.png, and copied to the path in the
environment variable DASHBOARD_SCREENSHOT when it is set (`make dashboard-screenshot`
refreshes the README's docs/dashboard.png that way). The same worker's /metrics must
agree with /stats, and its static files must be served with their types and refuse
path traversal.

Needs /usr/bin/chromium (Debian package `chromium`): skipped without it, unless the
environment variable CI or DASHBOARD_SCREENSHOT is set, where its absence is a failure.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from streams.config.settings import Settings
from streams.kafka.fleet_publisher import Sent, publish_fleet
from streams.web.dashboard import STATIC_DIR, static_file
from tests.worker_process import WorkerProcess

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
ENGINES = 3
LATENCY_SERIES = {"p50": "latency_p50_ms", "p95": "latency_p95_ms", "p99": "latency_p99_ms"}
SUCCESS_SERIES = {"success_rate": "success_rate"}
STATE_TIMEOUT_S = 120.0
CHROMIUM_TIMEOUT_S = 90.0
# Where to copy the screenshot as well (relative to the checkout), e.g. docs/dashboard.png.
SCREENSHOT_ENV = "DASHBOARD_SCREENSHOT"
SCREENSHOT_MAX_BYTES = 400_000  # a picture in the README, kept small for the repository


def chromium() -> Path:
    """The browser, or skip (fail in CI) when it is not installed."""
    if CHROMIUM.exists():
        return CHROMIUM
    install = "apt-get install -y chromium"
    for variable in ("CI", SCREENSHOT_ENV):
        if os.environ.get(variable):
            pytest.fail(f"{CHROMIUM} is missing and {variable} is set: it must run ({install})")
    pytest.skip(f"headless Chromium not installed: {CHROMIUM} is missing ({install})")


# --- a small DOM reader ---------------------------------------------------------------


@dataclass
class Chart:
    """An <svg data-chart> with its attributes and the data marks inside it."""

    attrs: dict[str, str]
    points: list[dict[str, str]] = field(default_factory=list)  # <circle data-series>
    bars: list[dict[str, str]] = field(default_factory=list)  # <rect data-key>


class DashboardDom(HTMLParser):
    """Collects the charts, the engine table rows and the panels of a dumped DOM."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.charts: list[Chart] = []
        self.rows: dict[str, dict[str, str | None]] = {}
        self.panels: dict[str, dict[str, str | None]] = {}
        self.body: dict[str, str | None] = {}
        self._svg_stack: list[Chart | None] = []
        self._row: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "body":
            self.body = found
        elif tag == "svg":
            chart = Chart({k: v or "" for k, v in found.items()}) if "data-chart" in found else None
            if chart is not None:
                self.charts.append(chart)
            self._svg_stack.append(chart)
        elif tag == "circle" and "data-series" in found:
            self._current().points.append({k: v or "" for k, v in found.items()})
        elif tag == "rect" and "data-key" in found:
            self._current().bars.append({k: v or "" for k, v in found.items()})
        elif tag == "section" and found.get("data-panel"):
            self.panels[found["data-panel"] or ""] = found
        elif tag == "tr" and "data-engine" in found:
            self._row = found["data-engine"]
            self.rows[self._row or ""] = {}
        elif tag == "td" and self._row is not None and found.get("data-field"):
            self.rows[self._row][found["data-field"] or ""] = found.get("data-value")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag == "svg":
            self._svg_stack.pop()

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg" and self._svg_stack:
            self._svg_stack.pop()
        elif tag == "tr":
            self._row = None

    def _current(self) -> Chart:
        charts = [c for c in self._svg_stack if c is not None]
        assert charts, "a data mark outside any <svg data-chart>"
        return charts[-1]

    def named(self, name: str) -> list[Chart]:
        """The charts with data-chart == name."""
        return [c for c in self.charts if c.attrs.get("data-chart") == name]


def parse_dom(html: str) -> DashboardDom:
    dom = DashboardDom()
    dom.feed(html)
    dom.close()
    return dom


# --- HTTP and browser helpers ---------------------------------------------------------


def http_get(url: str, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """GET `url`: (status, headers, body), also for 4xx/5xx answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def optional_view(worker: WorkerProcess, path: str) -> tuple[int, Any]:
    """(status, JSON body or None): for views that may not exist (a missing route
    answers a plain-text 404, which is not JSON)."""
    status, _, raw = http_get(worker.url + path)
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, None


def view(worker: WorkerProcess, path: str) -> Any:
    """The JSON of a view that must answer 200."""
    status, body = worker.get_json(path, timeout=10.0)
    assert status == 200, (path, status, body)
    return body


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `condition` until it answers something truthy; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = condition()
        except (OSError, ValueError, AssertionError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def run_chromium(browser: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        str(browser),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=8000",
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S)
    assert done.returncode == 0, f"chromium exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


# --- waiting for a settled worker ---------------------------------------------------------


def settled_state(worker: WorkerProcess, sent: Sent) -> dict[str, Any] | None:
    """The views' data once every message is read and every window is final, else None."""
    stats = view(worker, "/stats")["router"]
    if sum(stats["messages_in"].values()) < sent.messages + sent.bad:
        return None
    engines = view(worker, "/engines")["engines"]
    if len(engines) != ENGINES:
        return None
    if any(e["latest_final"] is None or e["current"] is not None for e in engines.values()):
        return None
    status, jobs = optional_view(worker, "/jobs")
    return {
        "stats": stats,
        "training": view(worker, "/training/stats"),
        # The watermarks follow the wall clock while partitions idle: not compared.
        "engines": {k: {**v, "watermark": None} for k, v in engines.items()},
        "jobs": (status, jobs),
    }


def wait_until_settled(worker: WorkerProcess, sent: Sent) -> dict[str, Any]:
    """Two equal settled states 1.5 s apart: nothing moves any more."""

    def stable() -> dict[str, Any] | None:
        first = settled_state(worker, sent)
        if first is None:
            return None
        time.sleep(1.5)
        return first if settled_state(worker, sent) == first else None

    found: dict[str, Any] = wait_for(
        stable, STATE_TIMEOUT_S, f"{ENGINES} engines with final windows and stable counts"
    )
    return found


# --- the checks -----------------------------------------------------------------------------


def check_line_charts(worker: WorkerProcess, dom: DashboardDom, engines: dict[str, Any]) -> int:
    """Every line chart's points equal its windows query; answer the points compared."""
    compared = 0
    for name, series in (("latency", LATENCY_SERIES), ("success-rate", SUCCESS_SERIES)):
        charts = dom.named(name)
        # Top 6 engines by requests: with three engines, all of them.
        assert sorted(c.attrs["data-engine"] for c in charts) == sorted(engines), name
        for chart in charts:
            engine = chart.attrs["data-engine"]
            size, start, end = (int(chart.attrs[k]) for k in ("data-size", "data-from", "data-to"))
            latest = engines[engine]["latest_final"]
            assert size == latest["window_size_s"] == 5
            assert start < latest["window_start"] < end == latest["window_start"] + size
            answer = view(worker, f"/engines/{engine}/windows?size={size}&from={start}&to={end}")
            windows = answer["windows"]
            assert windows, f"{engine}: no windows in [{start}, {end})"
            expected = {
                (label, w["window_start"]): (w[fieldname], w["final"])
                for w in windows
                for label, fieldname in series.items()
            }
            got = {}
            for point in chart.points:
                assert point["data-engine"] == engine
                key = (point["data-series"], int(point["data-window-start"]))
                assert key not in got, f"{name} {engine}: point {key} twice"
                got[key] = (float(point["data-value"]), point["data-final"] == "true")
            assert set(got) == set(expected), (name, engine, sorted(got), sorted(expected))
            for key, (value, final) in expected.items():
                assert close(got[key][0], value), (name, engine, key, got[key][0], value)
                assert got[key][1] == final, (name, engine, key)
            assert int(chart.attrs["data-points"]) == len(got)
            compared += len(got)
    return compared


def bars_of(dom: DashboardDom, name: str, attr: str) -> dict[str, float]:
    charts = dom.named(name)
    assert len(charts) == 1, f"{len(charts)} charts named {name}"
    bars: dict[str, float] = {}
    for bar in charts[0].bars:
        assert bar[attr] == bar["data-key"]
        assert bar["data-key"] not in bars
        bars[bar["data-key"]] = float(bar["data-value"])
    return bars


def check_bar_charts(dom: DashboardDom, state: dict[str, Any]) -> None:
    stats = state["stats"]
    assert stats["dead_letters"], "the fleet's bad messages should have made dead letters"
    assert bars_of(dom, "dead-letters", "data-reason") == stats["dead_letters"]
    assert bars_of(dom, "events-routed", "data-event-type") == stats["events_routed"]
    tiers = state["training"]["samples_by_tier"]
    assert bars_of(dom, "training-tiers", "data-tier") == tiers
    status, jobs = state["jobs"]
    if status == 200:
        by_status = Counter(job["status"] for job in jobs["jobs"])
        bars = bars_of(dom, "jobs-by-status", "data-status")
        assert {k: v for k, v in bars.items() if v} == dict(by_status)
        assert "hidden" not in dom.panels["jobs"]
    else:  # the jobs views are not there: the panel is hidden, no chart
        assert status == 404, (status, jobs)
        assert dom.named("jobs-by-status") == []
        assert "hidden" in dom.panels["jobs"]


def check_table(worker: WorkerProcess, dom: DashboardDom, engines: dict[str, Any]) -> None:
    assert sorted(dom.rows) == sorted(engines)
    for engine, row in dom.rows.items():
        latest = engines[engine]["latest_final"]
        assert int(row["window_start"] or 0) == latest["window_start"]
        assert int(row["count"] or 0) == latest["count"]
        for name in ("success_rate", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms"):
            assert close(float(row[name] or "nan"), latest[name]), (engine, name)
        status, body = optional_view(worker, f"/engines/{engine}/status")
        if status == 200:
            assert row["status"] == body["state"], (engine, row["status"], body)
        elif status == 404 and body is None:  # no such view: the column is left out
            assert row["status"] is None


def check_static_files(worker: WorkerProcess) -> None:
    status, headers, body = http_get(worker.url + "/dashboard")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'<script src="/dashboard/static/dashboard.js"' in body
    for name, content_type in (
        ("dashboard.js", "text/javascript"),
        ("dashboard.css", "text/css"),
        ("dashboard.html", "text/html"),
    ):
        status, headers, body = http_get(f"{worker.url}/dashboard/static/{name}")
        assert status == 200, name
        assert headers["Content-Type"].startswith(content_type), (name, headers)
        assert body == (STATIC_DIR / name).read_bytes()
    for probe in (
        "..%2Fdashboard.py",
        "%2E%2E%2Fdashboard.py",
        "..%5Cdashboard.py",
        "%2Fetc%2Fpasswd",
        "..",
        ".hidden.js",
        "missing.js",
        "dashboard.py",
    ):
        status, _, body = http_get(f"{worker.url}/dashboard/static/{probe}")
        assert status == 404, (probe, status, body[:200])
    status, _, _ = http_get(f"{worker.url}/dashboard/static/../streams/web/dashboard.py")
    assert status == 404


def check_metrics(worker: WorkerProcess, stats: dict[str, Any]) -> None:
    status, headers, body = http_get(worker.url + "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    for reason, count in stats["dead_letters"].items():
        assert values[f'enginestream_dead_letters_total{{reason="{reason}"}}'] == count
    for topic, count in stats["messages_in"].items():
        assert values[f'enginestream_messages_in_total{{topic="{topic}"}}'] == count
    for event_type, count in stats["events_routed"].items():
        assert values[f'enginestream_events_routed_total{{event_type="{event_type}"}}'] == count
    assert values["enginestream_window_records_emitted_total"] > 0
    assert any(k.startswith("enginestream_watermark_lag_seconds{") for k in values)
    assert any(k.startswith("enginestream_consumer_lag_messages{") for k in values)
    assert values['enginestream_sink_lines_written_total{channel="events"}'] > 0
    for family in ("counter", "gauge"):
        assert f" {family}\n" in text
    # Flush time and bytes, once the sinks keep them (ChannelSink.flush_seconds/bytes_written).
    if "# TYPE enginestream_sink_flush_seconds histogram" in text:
        count = values['enginestream_sink_flush_seconds_count{channel="events"}']
        assert count > 0
        assert values['enginestream_sink_flush_seconds_bucket{channel="events",le="+Inf"}'] == count
        assert values['enginestream_sink_flush_seconds_sum{channel="events"}'] > 0
        assert values['enginestream_sink_written_bytes_total{channel="events"}'] > 0


def copy_screenshot(screenshot: Path, destination: str | None) -> None:
    """Copy `screenshot` to `destination` (relative to the checkout) when one is given;
    a picture too large for the repository is refused, naming the limit."""
    if not destination:
        return
    size = screenshot.stat().st_size
    assert size < SCREENSHOT_MAX_BYTES, (
        f"{screenshot} is {size} bytes: over {SCREENSHOT_MAX_BYTES} for {destination}"
    )
    target = ROOT / destination
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(screenshot.read_bytes())


# --- the tests ---------------------------------------------------------------------------------


@pytest.mark.integration
def test_dashboard_shows_what_the_views_answer(
    isolated_env: dict[str, str], tmp_path: Path
) -> None:
    browser = chromium()
    env = {
        **isolated_env,
        "ENGINESTREAM_WINDOW_SIZES": "5",
        "ENGINESTREAM_WINDOW_IDLE_TIMEOUT": "2",
    }
    settings = Settings.from_env(env)
    worker = WorkerProcess(env, log_path=tmp_path / "worker.log").start()
    try:
        worker.wait_ready()
        status, _, _ = http_get(worker.url + "/dashboard")
        assert status == 200, (
            f"GET /dashboard answered {status}: register_dashboard(app) is not wired in "
            "streams/runtime/worker.py build_worker_app"
        )
        sent = asyncio.run(
            publish_fleet(
                settings,
                engines=ENGINES,
                rate=2000,
                duration=None,
                count=3000,
                batch=50,
                error_rate=0.05,
                bad_every=10,
                seed=1,
            )
        )
        assert sent.events == 3000 and sent.bad > 0
        state = wait_until_settled(worker, sent)

        page = worker.url + "/dashboard"
        done = run_chromium(browser, tmp_path / "profile-dom", "--dump-dom", page)
        (tmp_path / "dashboard.dom.html").write_text(done.stdout)
        dom = parse_dom(done.stdout)
        assert int(dom.body.get("data-refreshes") or 0) >= 2, "the page did not refresh"
        # Nothing moved while the browser ran: the DOM and the views describe one state.
        assert settled_state(worker, sent) == state

        engines = view(worker, "/engines")["engines"]
        points = check_line_charts(worker, dom, engines)
        assert points >= ENGINES * 4  # at least one window: p50, p95, p99, success rate
        check_bar_charts(dom, state)
        check_table(worker, dom, engines)

        ARTIFACTS.mkdir(exist_ok=True)
        screenshot = ARTIFACTS / "dashboard.png"
        screenshot.unlink(missing_ok=True)
        run_chromium(
            browser,
            tmp_path / "profile-shot",
            f"--screenshot={screenshot}",
            "--window-size=1400,1000",
            "--hide-scrollbars",
            page,
        )
        assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert screenshot.stat().st_size > 20_000  # drawn, not a blank page
        copy_screenshot(screenshot, os.environ.get(SCREENSHOT_ENV))

        check_static_files(worker)
        check_metrics(worker, state["stats"])
    finally:
        worker.stop()


# --- static file resolution (no broker, no browser) -------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "../dashboard.py",
        "..",
        ".",
        "",
        "/etc/passwd",
        "..\\dashboard.py",
        "static/dashboard.js",
        ".hidden.css",
        "dashboard.js/",
        "dashboard..js",
        "dashboard.py",
        "nothing-here.js",
        "dashboard.js\x00.css",
    ],
)
def test_static_file_refuses_anything_but_plain_known_files(name: str) -> None:
    assert static_file(name) is None


def test_static_file_serves_the_page_and_its_assets() -> None:
    for name, content_type in (
        ("dashboard.html", "text/html; charset=utf-8"),
        ("dashboard.js", "text/javascript; charset=utf-8"),
        ("dashboard.css", "text/css; charset=utf-8"),
    ):
        found = static_file(name)
        assert found is not None, name
        assert found == ((STATIC_DIR / name).read_bytes(), content_type)


def test_static_file_refuses_a_symlink_out_of_the_directory(tmp_path: Path) -> None:
    inside = tmp_path / "static"
    inside.mkdir()
    secret = tmp_path / "secret.js"
    secret.write_text("secret")
    (inside / "link.js").symlink_to(secret)
    (inside / "ok.js").write_text("ok")
    assert static_file("link.js", inside) is None
    assert static_file("ok.js", inside) == (b"ok", "text/javascript; charset=utf-8")


def test_the_page_loads_no_external_resources() -> None:
    for name in ("dashboard.html", "dashboard.js", "dashboard.css"):
        text = (STATIC_DIR / name).read_text()
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in text and "//cdn" not in text and "@import" not in text, name
        assert "fonts.googleapis" not in text and "@font-face" not in text, name
