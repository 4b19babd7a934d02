"""The dashboard as a person meets it (issue 13), in real headless Chromium against the
real DashboardServer on 127.0.0.1: what the score rests on, what the panels mean, the
words a score read, whole sessions for late tabs and exports, loading/running/finished,
a phone-sized window, replay with the recorded video, and accessibility.

Screenshots at 390x844 and 1920x1080 go to artifacts/ (git-ignored)."""

from __future__ import annotations

import csv
import io
import json
import pathlib
import shutil
import subprocess
import time
from typing import Any, Callable, Iterator

import pytest
from test_dashboard import ARTIFACTS, DashboardPage, browser  # noqa: F401  (browser is a fixture)
from test_server import make_hello, make_window

from realtime.core import protocol
from realtime.recording import SessionRecorder, read_session
from realtime.web.server import DashboardServer

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1920, "height": 1080}
TEXT_ONLY = {"name": "hcl-text-minilm", "version": "1", "inputs": ["text"]}


def hello_with(model: dict, *, session: str = "test-session", mode: str = "live") -> dict:
    return protocol.hello_message(session=session, mode=mode, model=model, step_seconds=0.5, window_steps=8, clusters=8)


@pytest.fixture
def open_page(browser) -> Iterator[Callable[..., DashboardPage]]:  # noqa: F811
    """open_page(url, viewport=..., color_scheme=...) -> DashboardPage (frames recorded)."""
    contexts = []

    def _open(url: str, *, viewport: dict = DESKTOP, color_scheme: str = "dark") -> DashboardPage:
        context = browser.new_context(viewport=viewport, color_scheme=color_scheme, accept_downloads=True)
        contexts.append(context)
        page = context.new_page()
        dash = DashboardPage(page=page)

        def on_ws(ws) -> None:
            ws.on("framereceived", lambda p: isinstance(p, str) and dash.frames.append(json.loads(p)))

        page.on("websocket", on_ws)
        page.on("console", lambda m: m.type == "error" and dash.console_errors.append(m.text))
        page.on("pageerror", lambda e: dash.console_errors.append(f"page error: {e}"))
        page.goto(url)
        return dash

    yield _open
    for c in contexts:
        c.close()


def text_of(dash: DashboardPage, testid: str) -> str:
    return dash.page.locator(f'[data-testid="{testid}"]').inner_text()


def attr(dash: DashboardPage, testid: str, name: str) -> str | None:
    return dash.page.get_attribute(f'[data-testid="{testid}"]', name)


def download_csv(dash: DashboardPage, tmp_path: pathlib.Path) -> list[dict]:
    with dash.page.expect_download() as dl:
        dash.page.click('[data-testid="export-csv"]')
    path = tmp_path / f"export-{time.monotonic_ns()}.csv"
    dl.value.save_as(path)
    return list(csv.DictReader(path.open()))


def record(folder: pathlib.Path, n: int, *, session: str = "rec-1", model: dict = TEXT_ONLY) -> None:
    with SessionRecorder(folder, session_info={"session": session, "model": model}) as rec:
        for seq in range(n):
            win = make_window(seq, session=session)
            rec.write_window(win)
            rec.add_words(win["words"])


# ---------------------------------------------------------------- 13.1 what the score rests on
def test_page_says_which_modalities_the_model_scores(open_page, tmp_path):
    card = tmp_path / "models" / "hcl-text-minilm" / "README.md"
    card.parent.mkdir(parents=True)
    card.write_text("# hcl-text-minilm\n\nText only. Trained on MOSI+MOSEI transcripts.\n")
    with DashboardServer(hello=hello_with(TEXT_ONLY), model_card=card) as srv:
        srv.publish(make_window(0))
        dash = open_page(srv.url)
        dash.wait_for_seq(0)
        said = text_of(dash, "model-text")
        assert "hcl-text-minilm" in said and "scores text only" in said, said
        assert "Audio and video are shown but not scored" in said, said
        link = dash.page.locator('[data-testid="model-card"]')
        assert link.is_visible()
        body = dash.page.evaluate("(href) => fetch(href).then((r) => r.text())", link.get_attribute("href"))
        assert "Trained on MOSI+MOSEI transcripts" in body
        # the panels of modalities the model does not score are greyed and say so
        for m in ("audio", "video"):
            assert attr(dash, f"weights-figure-{m}", "data-scored") == "false"
            assert attr(dash, f"weights-{m}", "data-note") == "not scored"
            assert "not scored" in text_of(dash, f"modality-{m}")
        assert attr(dash, "weights-figure-text", "data-scored") == "true"
        assert attr(dash, "attention-card", "data-scored") == "false"
        assert "does not score video" in text_of(dash, "attention-summary")
        assert dash.console_errors == []

    # another model, read from its hello: nothing is hard-coded
    trimodal = {"name": "hcl-trimodal-test", "version": "2", "inputs": ["text", "audio", "video"]}
    with DashboardServer(hello=hello_with(trimodal), model_card=None) as srv:
        srv.publish(make_window(0))
        dash = open_page(srv.url)
        dash.wait_for_seq(0)
        said = text_of(dash, "model-text")
        assert "hcl-trimodal-test" in said and "text, audio and video" in said and "only" not in said
        assert not dash.page.locator('[data-testid="model-card"]').is_visible()  # this one has no card
        assert attr(dash, "weights-figure-video", "data-scored") == "true"
        assert attr(dash, "attention-card", "data-scored") == "true"
        assert "strongest" in text_of(dash, "attention-summary")


def test_shipped_model_card_is_served_by_name():
    with DashboardServer(hello=hello_with(TEXT_ONLY)) as srv:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        conn.request("GET", "/model-card")
        resp = conn.getresponse()
        assert resp.status == 200 and b"hcl-text-minilm" in resp.read()
    # a hello cannot point the server at other files
    assert DashboardServer(hello=hello_with({"name": "../realtime", "inputs": ["text"]})).model_card is None


# ---------------------------------------------------------------- 13.2 panels with meaning
def test_each_panel_has_a_caption_scale_and_the_help_explains(open_page):
    with DashboardServer(hello=hello_with({"name": "m", "inputs": ["text", "audio", "video"]})) as srv:
        srv.publish(make_window(0))
        dash = open_page(srv.url)
        dash.wait_for_seq(0)
        captions = dash.page.evaluate(
            "() => [...document.querySelectorAll('main .card:not([hidden]) .caption')].map((e) => e.textContent.trim())"
        )
        assert len(captions) == 5 and all(len(c) > 30 for c in captions), captions  # 5: the readouts' (issue 24)
        assert dash.page.locator(".scale .ramp").is_visible()  # the attention colour scale
        assert dash.page.locator(".weights-card .axis").is_visible()  # COWA axis meaning
        assert "cluster 8" in text_of(dash, "weights-k")
        assert "text" in text_of(dash, "attention-card").lower() and "video" in text_of(dash, "attention-card").lower()
        help_box = dash.page.locator('[data-testid="help"]')
        assert not help_box.is_visible()
        dash.page.click('[data-testid="help-toggle"]')
        assert help_box.is_visible()
        terms = dash.page.evaluate("() => [...document.querySelectorAll('#help dt')].map((e) => e.textContent)")
        for term in ("Score", "Labels", "Windows", "COWA weights", "Guidance attention"):
            assert term in terms
        assert "strongly negative" in help_box.inner_text()
        assert attr(dash, "help-toggle", "aria-expanded") == "true"
        # /help is the same page with the panel open
        direct = open_page(srv.url.rstrip("/") + "/help")
        direct.wait_for_seq(0)
        assert direct.page.locator('[data-testid="help"]').is_visible()


# ---------------------------------------------------------------- 13.3 window vs words
def test_the_words_a_score_read_are_shown_with_their_own_span(open_page, tmp_path):
    words = [{"w": "really", "start": 10.4, "end": 11.0}, {"w": "good", "start": 12.0, "end": 12.5},
             {"w": "movie", "start": 16.8, "end": 17.4}]
    win = protocol.window_message(session="test-session", seq=27, start=13.5, end=17.5, score=1.2,
                                  presence={"text": True, "audio": True, "video": False}, words=words)
    with DashboardServer(hello=make_hello()) as srv:
        srv.publish(win)
        dash = open_page(srv.url)
        dash.wait_for_seq(27)
        assert text_of(dash, "window-time").startswith("window 0:13.5–0:17.5")
        assert text_of(dash, "text-span") == "words read 0:10.4–0:17.4"
        rows = download_csv(dash, tmp_path)
        assert list(rows[0]) == list(protocol.CSV_COLUMNS)
        assert float(rows[0]["text_start"]) == 10.4 and float(rows[0]["text_end"]) == 17.4
        assert float(rows[0]["start"]) == 13.5 and rows[0]["words"] == "really good movie"
        # the server's CSV of a recording has the same columns
        assert protocol.csv_text([win]).splitlines()[0].split(",") == list(protocol.CSV_COLUMNS)


# ---------------------------------------------------------------- 13.4 whole sessions
def test_export_covers_the_whole_live_session_not_the_last_two_minutes(open_page, tmp_path):
    n = 400  # 200 s of windows: more than the chart's 120 s
    with DashboardServer(hello=make_hello(), stats_interval=5) as srv:
        for seq in range(n):
            srv.publish(make_window(seq))
        dash = open_page(srv.url)
        dash.wait_for_seq(n - 1, timeout=30)
        assert int(attr(dash, "chart", "data-count")) < n  # the live chart shows the last 2 minutes
        assert dash.page.locator('[data-testid="history-note"]').is_hidden()  # nothing was cut
        rows = download_csv(dash, tmp_path)
        assert [int(r["seq"]) for r in rows] == list(range(n))


def test_late_tab_says_when_history_was_cut_and_exports_from_the_recording(open_page, tmp_path):
    folder = tmp_path / "live-rec"
    record(folder, 80, session="test-session")
    with DashboardServer(hello=make_hello(), history=50, recording=folder) as srv:
        for seq in range(80):
            srv.publish(make_window(seq))
        dash = open_page(srv.url)
        dash.wait_for_seq(79)
        note = dash.page.locator('[data-testid="history-note"]')
        assert note.is_visible() and note.get_attribute("data-cut") == "30"
        assert "30 before them were cut" in note.inner_text() and "whole session" in note.inner_text()
        rows = download_csv(dash, tmp_path)
        assert [int(r["seq"]) for r in rows] == list(range(80))  # from the recording
        assert list(rows[0]) == list(protocol.CSV_COLUMNS)
    with DashboardServer(hello=make_hello(), history=50) as srv:  # no recording: the page says so
        for seq in range(80):
            srv.publish(make_window(seq))
        dash = open_page(srv.url)
        dash.wait_for_seq(79)
        assert "--record" in text_of(dash, "history-note")
        assert [int(r["seq"]) for r in download_csv(dash, tmp_path)] == list(range(30, 80))


# ---------------------------------------------------------------- 13.5 loading / running / finished
def test_loading_running_finished_are_shown(open_page):
    with DashboardServer(hello=make_hello()) as srv:
        dash = open_page(srv.url)
        dash.page.wait_for_selector('[data-testid="status"][data-state="loading"]')
        assert "loading" in text_of(dash, "label")
        srv.publish(make_window(0))
        dash.page.wait_for_selector('[data-testid="status"][data-state="running"]')
        dash.wait_for_seq(0)
        assert text_of(dash, "mode") == "LIVE"
        srv.set_status(protocol.STATUS_FINISHED, "1 window")
        dash.page.wait_for_selector('[data-testid="status"][data-state="finished"]')
        assert text_of(dash, "mode") == "FINISHED" and attr(dash, "mode", "data-mode") == "finished"
        assert "the file has ended" in text_of(dash, "connection")
        assert "1 window" in text_of(dash, "status")
        # a tab opened after the end learns it at once
        late = open_page(srv.url)
        late.page.wait_for_selector('[data-testid="status"][data-state="finished"]')
        assert text_of(late, "mode") == "FINISHED"
        assert dash.console_errors == [] and late.console_errors == []


# ---------------------------------------------------------------- 13.6 phone and desktop layouts
LAYOUT_PROBE = """() => {
  const vw = document.documentElement.clientWidth;
  const controls = [...document.querySelectorAll('button, a[href], input, video')]
    .filter((e) => !e.closest('[hidden]') && getComputedStyle(e).display !== 'none');
  const bad = [];
  for (const e of controls) {
    const r = e.getBoundingClientRect();
    if (r.width < 1 || r.height < 1 || r.left < 0 || r.right > vw + 0.5) bad.push([e.dataset.testid || e.tagName, r.left, r.right]);
  }
  const boxes = [...document.querySelectorAll('.topbar > *, .health > *')].map((e) => [e.className || e.tagName, e.getBoundingClientRect()]);
  const overlaps = [];
  for (let i = 0; i < boxes.length; i += 1) for (let j = i + 1; j < boxes.length; j += 1) {
    const [na, a] = boxes[i], [nb, b] = boxes[j];
    if (a.width && b.width && a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1) {
      const inside = (x, y) => x.left >= y.left && x.right <= y.right && x.top >= y.top && x.bottom <= y.bottom;
      if (!inside(a, b) && !inside(b, a)) overlaps.push([na, nb]);
    }
  }
  const h2 = [...document.querySelectorAll('h1, h2')].filter((e) => e.offsetParent).map((e) => {
    const lh = parseFloat(getComputedStyle(e).lineHeight) || parseFloat(getComputedStyle(e).fontSize) * 1.25;
    return [e.textContent.trim(), Math.round(e.getBoundingClientRect().height / lh)];
  });
  const box = document.querySelector('[data-testid="transcript"]').getBoundingClientRect();
  const words = [...document.querySelectorAll('[data-testid="transcript-word"]')];
  const clipped = words.filter((w) => {
    const r = w.getBoundingClientRect();
    return r.top < box.top - 0.5 || r.bottom > box.bottom + 0.5;
  }).map((w) => w.textContent);
  return {
    scrollWidth: document.documentElement.scrollWidth, bodyScrollWidth: document.body.scrollWidth, vw,
    badControls: bad, nControls: controls.length, overlaps, headingLines: h2,
    nWords: words.length, clippedWords: clipped,
  };
}"""


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["390x844", "1920x1080"])
def test_layout_fits_the_screen_with_every_control_visible(open_page, tmp_path, viewport):
    size = f"{viewport['width']}x{viewport['height']}"
    ARTIFACTS.mkdir(exist_ok=True)
    with DashboardServer(hello=hello_with(TEXT_ONLY, session="a-long-session-name-2026-11-30T04-00-00"), stats_interval=0.3) as srv:
        for seq in range(60):
            srv.publish(make_window(seq, session="a-long-session-name-2026-11-30T04-00-00"))
        dash = open_page(srv.url, viewport=viewport)
        dash.wait_for_seq(59)
        dash.page.wait_for_function("() => document.querySelector('[data-testid=latency]').textContent.includes('p95')")
        dash.page.wait_for_timeout(200)
        probe = dash.page.evaluate(LAYOUT_PROBE)
        dash.page.screenshot(path=str(ARTIFACTS / f"dashboard-{size}.png"), full_page=True)
        assert probe["scrollWidth"] <= viewport["width"] and probe["bodyScrollWidth"] <= viewport["width"], probe
        assert probe["badControls"] == [] and probe["nControls"] >= 3, probe
        assert probe["overlaps"] == [], probe
        for heading, lines in probe["headingLines"]:
            assert lines <= 2, (heading, lines)
        assert probe["nWords"] > 5 and probe["clippedWords"] == [], probe  # no transcript line is cut
        export = dash.page.locator('[data-testid="export-csv"]')
        export.scroll_into_view_if_needed()
        assert export.is_visible()
        dash.page.click('[data-testid="help-toggle"]')
        assert dash.page.evaluate("() => document.documentElement.scrollWidth") <= viewport["width"]
        assert dash.console_errors == []


# ---------------------------------------------------------------- 13.7 replay with picture and sound
def make_video(path: pathlib.Path, seconds: float) -> None:
    """An H.264/AAC mp4 (a 16:9 test pattern with a tone), as the recorder writes."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is missing (scripts/setup.sh installs it)")
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size=320x180:rate=10:duration={seconds}",
         "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-c:v", "libx264", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-shortest", "-movflags", "+faststart", str(path)],
        check=True, timeout=60,
    )


def test_replay_plays_the_recorded_video_in_sync_with_the_chart(open_page, tmp_path):
    folder = tmp_path / "recorded"
    record(folder, 24)  # window ends 4.0 .. 15.5 s
    make_video(folder / "video.mp4", 16)
    recorded = read_session(folder)
    ends = [w["end"] for w in recorded.windows]
    hello = hello_with(TEXT_ONLY, session="rec-1", mode="replay")
    with DashboardServer(hello=hello, session=recorded.session_message(), recording=folder) as srv:
        dash = open_page(srv.url)
        dash.page.wait_for_selector('[data-testid="chart"][data-count="24"]')
        v = dash.page.locator('[data-testid="replay-video"]')
        assert v.is_visible()
        dash.page.wait_for_function("() => document.querySelector('[data-testid=replay-video]').readyState >= 1", timeout=15000)
        duration = dash.page.evaluate("() => document.querySelector('[data-testid=replay-video]').duration")
        assert duration == pytest.approx(16, abs=0.5)
        # replay hides live-only figures
        assert dash.page.locator('[data-testid="latency"]').is_hidden()
        assert dash.page.locator('[data-testid="dropped"]').is_hidden()

        def video_time() -> float:
            return dash.page.evaluate("() => document.querySelector('[data-testid=replay-video]').currentTime")

        # the slider moves the video
        dash.page.locator('[data-testid="timeline"]').fill("10")
        dash.wait_for_seq(10)
        dash.page.wait_for_function(f"() => Math.abs(document.querySelector('[data-testid=replay-video]').currentTime - {ends[10]}) < 0.35")
        # the video moves the chart
        dash.page.evaluate("() => { document.querySelector('[data-testid=replay-video]').currentTime = 9.3; }")
        want = max(i for i, e in enumerate(ends) if e <= 9.3)
        dash.wait_for_seq(recorded.windows[want]["seq"])
        # dragging on the chart scrubs both
        box = dash.page.locator('[data-testid="chart"]').bounding_box()
        y = box["y"] + box["height"] / 2
        dash.page.mouse.move(box["x"] + box["width"] * 0.15, y)
        dash.page.mouse.down()
        seqs = []
        for frac in (0.3, 0.5, 0.7):
            dash.page.mouse.move(box["x"] + box["width"] * frac, y, steps=4)
            dash.page.wait_for_timeout(80)
            seqs.append(int(attr(dash, "score", "data-seq")))
        dash.page.mouse.up()
        assert seqs == sorted(seqs) and seqs[0] < seqs[-1], seqs
        dash.page.wait_for_timeout(200)
        assert abs(video_time() - ends[seqs[-1]]) < 0.35
        # play runs the video and the chart follows it
        dash.page.locator('[data-testid="timeline"]').fill("2")
        dash.wait_for_seq(2)
        dash.page.evaluate("() => { document.querySelector('[data-testid=replay-video]').muted = true; }")
        dash.page.click('[data-testid="play"]')
        dash.page.wait_for_function("() => !document.querySelector('[data-testid=replay-video]').paused", timeout=5000)
        dash.page.wait_for_function("() => Number(document.querySelector('[data-testid=score]').dataset.seq) >= 5", timeout=10000)
        shown = int(attr(dash, "score", "data-seq"))
        assert abs(ends[shown] - video_time()) < 1.0
        dash.page.click('[data-testid="play"]')
        ARTIFACTS.mkdir(exist_ok=True)
        dash.page.screenshot(path=str(ARTIFACTS / "dashboard-replay-video-1920x1080.png"))
        assert dash.console_errors == []


def test_replay_on_a_phone_keeps_video_and_controls_on_screen(open_page, tmp_path):
    folder = tmp_path / "recorded"
    record(folder, 12)
    make_video(folder / "video.mp4", 10)
    recorded = read_session(folder)
    with DashboardServer(hello=hello_with(TEXT_ONLY, session="rec-1", mode="replay"),
                         session=recorded.session_message(), recording=folder) as srv:
        dash = open_page(srv.url, viewport=PHONE)
        dash.page.wait_for_selector('[data-testid="chart"][data-count="12"]')
        dash.page.wait_for_timeout(200)
        probe = dash.page.evaluate(LAYOUT_PROBE)
        assert probe["scrollWidth"] <= PHONE["width"] and probe["badControls"] == [], probe
        assert dash.page.locator('[data-testid="replay-video"]').is_visible()
        dash.page.screenshot(path=str(ARTIFACTS / "dashboard-replay-390x844.png"), full_page=True)


# ---------------------------------------------------------------- 13.8 accessibility
def test_screen_readers_hear_label_changes_only_and_charts_have_text(open_page):
    with DashboardServer(hello=make_hello()) as srv:
        dash = open_page(srv.url)
        dash.page.wait_for_selector('[data-testid="connection"][data-state="open"]')
        assert dash.page.locator("h1").count() == 1
        assert dash.page.locator("header").count() == 1 and dash.page.locator("main").count() == 1
        # the score card is no longer a live region (it changed every 0.5 s)
        assert dash.page.evaluate("() => document.querySelectorAll('[aria-live]').length") == 1
        assert attr(dash, "announce", "aria-live") == "polite"
        dash.page.evaluate("""() => {
          window.__announced = [];
          new MutationObserver(() => window.__announced.push(document.querySelector('[data-testid=announce]').textContent))
            .observe(document.querySelector('[data-testid=announce]'), {childList: true, characterData: true, subtree: true});
        }""")
        scores = [0.1, 0.2, -0.3, 1.1, 1.2, 1.3, 0.9, -2.2, -2.0]  # labels: neutral x3, weakly positive x4, negative x2
        for seq, s in enumerate(scores):
            srv.publish(protocol.window_message(session="test-session", seq=seq, start=seq * 0.5, end=seq * 0.5 + 4,
                                                score=s, presence={"text": True}))
            dash.wait_for_seq(seq)
        announced = dash.page.evaluate("() => window.__announced")
        assert announced == ["Now neutral", "Now weakly positive", "Now negative"], announced
        # every chart has a text alternative that says what it shows
        for canvas, summary in (("chart", "chart-summary"), ("weights-text", "weights-summary"), ("attention", "attention-summary")):
            assert attr(dash, canvas, "role") == "img"
            described = attr(dash, canvas, "aria-describedby")
            assert described and dash.page.locator(f"#{described}").inner_text().strip()
        s = text_of(dash, "chart-summary")
        assert "9 windows" in s and "lowest -2.20" in s and "highest +1.30" in s and "negative" in s


def test_follows_the_system_light_or_dark_preference(open_page):
    backgrounds = {}
    with DashboardServer(hello=make_hello()) as srv:
        srv.publish(make_window(0))
        for scheme in ("dark", "light"):
            dash = open_page(srv.url, color_scheme=scheme)
            dash.wait_for_seq(0)
            backgrounds[scheme] = dash.page.evaluate(
                "() => [getComputedStyle(document.body).backgroundColor, getComputedStyle(document.body).color]"
            )
            if scheme == "light":
                dash.page.screenshot(path=str(ARTIFACTS / "dashboard-light-1920x1080.png"))

    def luminance(rgb: str) -> float:
        r, g, b = (int(x) for x in rgb[rgb.index("(") + 1 : rgb.index(")")].split(",")[:3])
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    assert luminance(backgrounds["dark"][0]) < 60 < 200 < luminance(backgrounds["light"][0])
    assert luminance(backgrounds["light"][1]) < 60  # dark text on the light page


def test_hcl_replay_serves_the_folder_video_to_the_page(open_page, tmp_path):
    """hcl-replay attaches the session folder: the page gets its video and whole CSV."""
    import os
    import re
    import signal
    import sys

    folder = tmp_path / "recorded"
    record(folder, 12)
    make_video(folder / "video.mp4", 10)
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from realtime.app.replay import replay_main; sys.exit(replay_main(sys.argv[1:]))",
         str(folder), "--port", "0", "--no-browser"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=pathlib.Path(__file__).resolve().parent.parent,
        env={**os.environ, "PYTHONPATH": str(pathlib.Path(__file__).resolve().parent.parent)},
    )
    try:
        line = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "dashboard:" not in line:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
        m = re.search(r"(http://127\.0\.0\.1:\d+/\S*)", line)
        assert m, f"no dashboard URL printed: {line!r}"
        dash = open_page(m.group(1))
        dash.page.wait_for_selector('[data-testid="chart"][data-count="12"]')
        assert dash.page.locator('[data-testid="replay-video"]').is_visible()
        dash.page.wait_for_function("() => document.querySelector('[data-testid=replay-video]').readyState >= 1", timeout=15000)
        hello = next(f for f in dash.frames if f["type"] == "hello")
        assert hello["recording"]["video"] == "/recording/video.mp4"
        assert [int(r["seq"]) for r in download_csv(dash, tmp_path)] == list(range(12))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_a_server_error_is_shown_on_the_page_and_to_late_tabs(open_page):
    """hcl-live publishes an "error" when the recording stops (a full disk): the page
    must say so, and a tab opened afterwards too."""
    with DashboardServer(hello=make_hello()) as srv:
        srv.publish(make_window(0))
        dash = open_page(srv.url)
        dash.wait_for_seq(0)
        assert dash.page.locator('[data-testid="server-error"]').is_hidden()
        srv.publish(protocol.error_message("recording stopped: No space left on device"))
        dash.page.wait_for_selector('[data-testid="server-error"]:not([hidden])')
        assert "No space left on device" in text_of(dash, "server-error")
        assert attr(dash, "server-error", "role") == "alert"
        late = open_page(srv.url)
        late.page.wait_for_selector('[data-testid="server-error"]:not([hidden])')
        assert "No space left on device" in text_of(late, "server-error")


def test_with_a_token_the_page_reaches_card_video_and_csv_without_a_cookie(open_page, tmp_path):
    """No cookie carries the token any more: the page passes it on to every URL it uses."""
    folder = tmp_path / "recorded"
    record(folder, 12)
    make_video(folder / "video.mp4", 10)
    recorded = read_session(folder)
    with DashboardServer(hello=hello_with(TEXT_ONLY, session="rec-1", mode="replay"), session=recorded.session_message(),
                         recording=folder, token="tok-456") as srv:
        dash = open_page(srv.url)
        dash.page.wait_for_selector('[data-testid="chart"][data-count="12"]')
        dash.page.wait_for_function("() => document.querySelector('[data-testid=replay-video]').readyState >= 1", timeout=15000)
        card = dash.page.get_attribute('[data-testid="model-card"]', "href")
        assert dash.page.evaluate("(h) => fetch(h).then((r) => r.status)", card) == 200
        assert [int(r["seq"]) for r in download_csv(dash, tmp_path)] == list(range(12))
        assert dash.page.context.cookies() == []
        assert dash.console_errors == []
