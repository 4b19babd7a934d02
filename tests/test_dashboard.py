"""The dashboard in real headless Chromium against the real DashboardServer on 127.0.0.1.

Helpers meant for reuse (e.g. an end-to-end test that drives the real pipeline):
`browser` (module fixture), `dashboard_page` (fixture: a function url -> DashboardPage)
and `DashboardPage`, which records every websocket frame the page receives and reads
what the page shows. Import them with `from test_dashboard import ...` plus the fixtures.
"""

from __future__ import annotations

import csv
import json
import pathlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import pytest
from test_server import make_hello, make_window

from realtime.core import protocol
from realtime.recording import SessionRecorder, read_session
from realtime.web.server import DashboardServer

playwright_sync = pytest.importorskip("playwright.sync_api")

CHROMIUM = pathlib.Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ARTIFACTS = pathlib.Path(__file__).resolve().parent.parent / "artifacts"
VIEWPORT = {"width": 1440, "height": 900}
# what Chromium itself logs while a server is down and the page retries
RECONNECT_NOISE = ("WebSocket connection to", "ERR_CONNECTION_REFUSED")


@dataclass
class DashboardPage:
    """A dashboard tab plus everything it received over its websocket(s)."""

    page: Any
    frames: list[dict] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def windows(self) -> list[dict]:
        return [f for f in self.frames if f.get("type") == "window"]

    def last_window(self) -> dict:
        return max(self.windows(), key=lambda w: w["seq"])

    def wait_for_windows(self, n: int, timeout: float = 15.0) -> dict:
        """Wait until >= n windows arrived and the page shows the newest; return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.windows()) >= n:
                last = self.last_window()
                if self.page.get_attribute('[data-testid="score"]', "data-seq") == str(last["seq"]):
                    return last
            self.page.wait_for_timeout(50)
        raise AssertionError(f"dashboard got {len(self.windows())} windows in {timeout} s, wanted {n}")

    def wait_for_seq(self, seq: int, timeout: float = 15.0) -> None:
        self.page.wait_for_selector(f'[data-testid="score"][data-seq="{seq}"]', timeout=timeout * 1000)

    def shown(self) -> dict:
        """What a person sees: score, label, highlighted words and modality states."""
        return self.page.evaluate(
            """() => {
              const q = (id) => document.querySelector(`[data-testid="${id}"]`);
              const mod = (m) => ({ present: q(`modality-${m}`).dataset.present,
                                    scored: q(`modality-${m}`).dataset.scored,
                                    text: q(`modality-${m}`).querySelector('.m-state').textContent });
              return {
                score: q('score').textContent, seq: q('score').dataset.seq, label: q('label').textContent,
                current_words: [...document.querySelectorAll('[data-testid="transcript-word"][data-current="true"]')]
                                 .map((e) => e.textContent),
                all_words: [...document.querySelectorAll('[data-testid="transcript-word"]')].map((e) => e.textContent),
                modalities: { text: mod('text'), audio: mod('audio'), video: mod('video') },
                connection: q('connection').dataset.state, mode: q('mode').dataset.mode,
                latency: q('latency').textContent, dropped: q('dropped').textContent,
                chart_count: Number(q('chart').dataset.count),
              };
            }"""
        )


def assert_shows(shown: dict, window: dict) -> None:
    """The page shows exactly this window message."""
    assert shown["seq"] == str(window["seq"])
    assert float(shown["score"]) == pytest.approx(round(window["score"], 2), abs=0.006)
    assert shown["label"] == window["label"]
    assert shown["current_words"] == [w["w"] for w in window["words"]]
    absent = {"text": "no words", "audio": "silence", "video": "no face"}
    for m in ("text", "audio", "video"):
        assert shown["modalities"][m]["present"] == str(window["presence"][m]).lower(), m
        if not window["presence"][m]:
            assert shown["modalities"][m]["text"] == absent[m]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (scripts/setup.sh does)")
    with playwright_sync.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def dashboard_page(browser) -> Iterator[Callable[[str], DashboardPage]]:
    """dashboard_page(server_url) opens the dashboard in a fresh tab."""
    contexts = []

    def open_page(url: str) -> DashboardPage:
        context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
        contexts.append(context)
        page = context.new_page()
        dash = DashboardPage(page=page)

        def on_ws(ws) -> None:
            def on_frame(payload) -> None:
                if isinstance(payload, str):
                    dash.frames.append(json.loads(payload))

            ws.on("framereceived", on_frame)

        page.on("websocket", on_ws)
        page.on("console", lambda m: m.type == "error" and dash.console_errors.append(m.text))
        page.on("pageerror", lambda e: dash.console_errors.append(f"page error: {e}"))
        page.goto(url)
        return dash

    yield open_page
    for c in contexts:
        c.close()


class Publisher(threading.Thread):
    """Publishes synthetic windows seq = first .. first+n-1 every `every` seconds."""

    def __init__(self, server: DashboardServer, *, first: int = 0, n: int = 10, every: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.server, self.first, self.n, self.every = server, first, n, every

    def run(self) -> None:
        for seq in range(self.first, self.first + self.n):
            self.server.publish(make_window(seq))
            time.sleep(self.every)


def test_live_view_shows_the_last_window(dashboard_page, tmp_path):
    with DashboardServer(hello=make_hello(), stats_interval=0.3) as srv:
        dash = dashboard_page(srv.url)
        dash.page.wait_for_selector('[data-testid="connection"][data-state="open"]')
        pub = Publisher(srv, n=40, every=0.04)
        pub.start()
        pub.join()
        last = dash.wait_for_windows(40)
        assert last["seq"] == 39
        dash.page.wait_for_function("() => document.querySelector('[data-testid=latency]').textContent.includes('p95')")
        shown = dash.shown()
        assert_shows(shown, last)
        assert shown["connection"] == "open" and shown["mode"] == "live"
        assert shown["chart_count"] == 40
        assert "p50" in shown["latency"] and shown["dropped"] == "0"
        for w in dash.windows()[-3:]:
            assert set(w) == protocol.WINDOW_KEYS
        # the transcript holds each word once, in time order, however many windows carried it
        carried = {(w["start"], w["w"]) for win in dash.windows() for w in win["words"]}
        expected = [w for _, w in sorted(carried)]
        assert len(shown["all_words"]) >= 20 and shown["all_words"] == expected[-len(shown["all_words"]):]

        # a window with no words, no speech, no face
        srv.publish(protocol.window_message(
            session="test-session", seq=40, start=20.0, end=24.0, score=-2.2,
            presence={"text": False, "audio": False, "video": False}))
        dash.wait_for_seq(40)
        quiet = dash.shown()
        assert_shows(quiet, dash.last_window())
        assert quiet["label"] == "negative" and quiet["current_words"] == []

        srv.publish(make_window(41))
        dash.wait_for_seq(41)
        ARTIFACTS.mkdir(exist_ok=True)
        dash.page.wait_for_timeout(150)  # let the canvases paint
        dash.page.screenshot(path=str(ARTIFACTS / "dashboard.png"))

        with dash.page.expect_download() as dl:
            dash.page.click('[data-testid="export-csv"]')
        path = tmp_path / "scores.csv"
        dl.value.save_as(path)
        rows = list(csv.DictReader(path.open()))
        assert [int(r["seq"]) for r in rows] == list(range(42))
        assert float(rows[-1]["score"]) == dash.last_window()["score"]
        assert dash.console_errors == []


def test_late_page_shows_history(dashboard_page):
    with DashboardServer(hello=make_hello()) as srv:
        for seq in range(12):
            srv.publish(make_window(seq))
        time.sleep(0.1)
        dash = dashboard_page(srv.url)
        last = dash.wait_for_windows(12)
        assert_shows(dash.shown(), last)
        assert dash.shown()["chart_count"] == 12
        assert dash.console_errors == []


def test_reconnects_after_server_restart(dashboard_page):
    srv = DashboardServer(hello=make_hello())
    srv.start()
    port = srv.port
    try:
        dash = dashboard_page(srv.url)
        Publisher(srv, n=6, every=0.02).run()
        dash.wait_for_windows(6)
    finally:
        srv.stop()
        srv.join(10)
    dash.page.wait_for_selector('[data-testid="connection"][data-state="closed"]', timeout=10000)
    time.sleep(0.8)  # the page retries against a closed port a few times
    with DashboardServer(hello=make_hello(), port=port) as again:
        dash.page.wait_for_selector('[data-testid="connection"][data-state="open"]', timeout=15000)
        Publisher(again, first=6, n=6, every=0.02).run()
        dash.wait_for_seq(11)
        assert_shows(dash.shown(), dash.last_window())
        assert dash.shown()["chart_count"] == 12  # the history from before the restart is kept
    unexpected = [e for e in dash.console_errors if not any(n in e for n in RECONNECT_NOISE)]
    assert unexpected == []


def test_token_travels_from_page_url_to_websocket(dashboard_page):
    with DashboardServer(hello=make_hello(), token="tok-123") as srv:
        dash = dashboard_page(srv.url)  # .../?token=tok-123
        Publisher(srv, n=5, every=0.02).run()
        assert_shows(dash.shown() if dash.wait_for_windows(5) else {}, dash.last_window())
        assert dash.console_errors == []


def test_replay_shows_recorded_session_and_scrubs(dashboard_page, tmp_path):
    folder = tmp_path / "recorded"
    with SessionRecorder(folder, session_info={"session": "rec-1"}) as rec:
        for seq in range(20):
            win = make_window(seq, session="rec-1")
            rec.write_window(win)
            rec.add_words(win["words"])
    recorded = read_session(folder)
    hello = make_hello(session="rec-1", mode="replay")
    with DashboardServer(hello=hello, session=recorded.session_message()) as srv:
        dash = dashboard_page(srv.url)
        dash.page.wait_for_selector('[data-testid="chart"][data-count="20"]')
        shown = dash.shown()
        assert shown["mode"] == "replay"
        assert_shows(shown, recorded.windows[0])
        slider = dash.page.locator('[data-testid="timeline"]')
        assert slider.get_attribute("max") == "19"
        for i in (13, 5, 19):
            slider.fill(str(i))
            dash.wait_for_seq(recorded.windows[i]["seq"])
            assert_shows(dash.shown(), recorded.windows[i])
        # play runs through the session from where it is
        slider.fill("16")
        dash.page.click('[data-testid="play"]')
        dash.wait_for_seq(19, timeout=5)
        ARTIFACTS.mkdir(exist_ok=True)
        slider.fill("12")
        dash.page.wait_for_timeout(150)
        dash.page.screenshot(path=str(ARTIFACTS / "dashboard-replay.png"))
        assert dash.console_errors == []
