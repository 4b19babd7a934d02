"""Two people at once, each in their own Chromium: the real dashboard's "Start my camera
and microphone" button, real capture.js + pcm-worklet.js, fake devices fed from files
(Chromium's fake-device flags are per browser process, so two browsers for two
clips), one server with one shared scorer and one shared Whisper.

One browser's microphone says a clearly positive sentence, the other's a clearly
negative one, both over a real face. Each page follows its own session's link and
shows its own transcript and scores of its clip's sign; neither gets a window of
the other (checked on the frames its websocket received); a browser closed in the
middle of its session leaves a readable recording."""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import time
import wave

import numpy as np
import pytest
from test_capture_client import write_y4m  # a still RGB image as a y4m file for Chromium's fake camera

playwright_sync = pytest.importorskip("playwright.sync_api")

CLIENT = pathlib.Path(__file__).resolve().parent.parent / "client"
CHROMIUM = pathlib.Path("/usr/bin/chromium")

pytestmark = pytest.mark.slow
MIN_WORDS = 2  # a window that read at least this many words of its sentence
# how long a condition may take: generous, as CI may share the machine (HCL_TEST_WAIT s)
WAIT = float(os.environ.get("HCL_TEST_WAIT", "300"))
POSITIVE_WORDS = r"love|wonderful|happy"
NEGATIVE_WORDS = r"hate|terrible|worst"


def _write_wav(path: pathlib.Path, audio16k: np.ndarray, rate: int = 48000) -> pathlib.Path:
    from realtime.sources.demo import resample

    pcm = (np.clip(resample(audio16k, 16000, rate), -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """(positive wav, negative wav, face y4m): espeak-ng sentences (looped by Chromium) over the astronaut."""
    import cv2

    from realtime.sources.demo import NEGATIVE, POSITIVE, compose_audio, face_image

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    folder = tmp_path_factory.mktemp("clips")
    pos, _ = compose_audio([POSITIVE], lead=0.3, gap=1.0, tail=1.2)
    neg, _ = compose_audio([NEGATIVE], lead=0.3, gap=1.0, tail=1.2)
    face = cv2.copyMakeBorder(face_image(320), 80, 80, 160, 160, cv2.BORDER_CONSTANT, value=(40, 40, 40))  # 640x480
    return _write_wav(folder / "positive.wav", pos), _write_wav(folder / "negative.wav", neg), write_y4m(folder / "face.y4m", face)


@pytest.fixture
def server(shipped_live_checkpoint, tmp_path):
    """hcl-live --browser in-process: no local session, browser sessions recorded under tmp/rec."""
    import torch

    from realtime.core.component import Policy
    from realtime.pipeline.live import PipelineOptions, session_hello
    from realtime.pipeline.scorer import WindowScorer
    from realtime.pipeline.speech import SpeechOptions
    from realtime.sessions.governor import GovernorConfig
    from realtime.sessions.hub import HubConfig, SessionHub
    from realtime.web.server import DashboardServer

    torch.set_num_threads(1)
    scorer = WindowScorer(checkpoint=shipped_live_checkpoint, device="cpu", max_streams=2)
    scorer.warm_up()
    # health and capacity bounds off: this shared test machine is often busier than the
    # sessions need; admission is tested in test_sessions.py and test_governor.py.
    # Windows wait for their words (the reproducible policy). The live policy passed here 3 of
    # 3 times on an idle machine (about 36 s) but failed in a clean-clone CI run and at load
    # 15-21 (the two transcripts lagged more than a window's text reaches back). What the
    # live policy holds at 1-8 sessions is measured by bench/sessions_bench.py.
    options = PipelineOptions(policy=Policy.REPRODUCIBLE, speech=SpeechOptions(max_backlog=None))
    hub = SessionHub(scorer=scorer, options=options,
                     config=HubConfig(max_sessions=2, record_dir=tmp_path / "rec", max_lag_p95=None, refuse_on_drops=False,
                                      governor=GovernorConfig(admission=False)))
    srv = DashboardServer(hello=session_hello(session_id="browser-sessions", scorer=scorer), sessions=hub, client_dir=CLIENT)
    srv.start()
    hub.start()
    hub.warm_up()  # the scorer's graphs and Whisper, before the pages start
    try:
        yield hub, srv
    finally:
        hub.stop()
        hub.join(10)
        srv.stop()
        srv.join(10)


def _browser(pw, wav: pathlib.Path, y4m: pathlib.Path):
    args = [
        "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}", f"--use-file-for-fake-video-capture={y4m}",
        "--autoplay-policy=no-user-gesture-required",
    ]
    return pw.chromium.launch(executable_path=str(CHROMIUM), args=args, headless=True)


class Person:
    """One browser with one page on the dashboard, and what its stream websocket received."""

    def __init__(self, pw, url: str, wav: pathlib.Path, y4m: pathlib.Path) -> None:
        self.browser = _browser(pw, wav, y4m)
        self.page = self.browser.new_page()
        self.errors: list[str] = []
        self.frames: list[dict] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("websocket", self._on_socket)
        self.page.goto(url)

    def _on_socket(self, ws) -> None:
        if "/ws" not in ws.url:
            return

        def got(payload):
            if isinstance(payload, str):
                msg = json.loads(payload)
                msg["_url"] = ws.url
                self.frames.append(msg)

        ws.on("framereceived", got)

    def windows(self, session: str | None = None) -> list[dict]:
        return [m for m in self.frames if m.get("type") == "window" and (session is None or "session=" in m["_url"])]


def _pump(people: dict, ms: int = 500) -> None:
    """Let time pass inside Playwright: the sync API delivers a page's events (the websocket
    frames we record) only while one of its calls runs, never during time.sleep."""
    for p in people.values():
        p.page.wait_for_timeout(ms / len(people))


def _text(window: dict) -> str:
    return " ".join(str(w["w"]) for w in window.get("words") or ())


def _worded(windows: list[dict]) -> list[dict]:
    return [w for w in windows if len(w.get("words") or []) >= MIN_WORDS]


def _wait_for(people: dict, condition, timeout: float = WAIT, step_ms: int = 500) -> bool:
    """Pump the pages until `condition()` holds or `timeout` s passed; whether it held.
    Conditions, not counts of windows: a busy machine makes everything slower, not different."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        _pump(people, step_ms)
    return True


def test_two_browsers_monitor_themselves_at_once(server, clips):
    from realtime.recording import read_session

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (scripts/setup.sh does)")
    hub, srv = server
    pos_wav, neg_wav, y4m = clips
    with playwright_sync.sync_playwright() as pw:
        people = {"positive": Person(pw, srv.url, pos_wav, y4m), "negative": Person(pw, srv.url, neg_wav, y4m)}
        try:
            for p in people.values():
                start = p.page.get_by_test_id("capture-start")
                start.wait_for(state="visible", timeout=WAIT * 1000)
                start.click()
            links = {}
            for name, p in people.items():
                link = p.page.get_by_test_id("session-link")
                link.wait_for(state="visible", timeout=WAIT * 1000)
                links[name] = link.get_attribute("href")
                assert re.fullmatch(r"/s/[\w-]{24,}", links[name]), links[name]
                assert p.page.evaluate("location.pathname") == links[name]  # the page follows its session
            assert links["positive"] != links["negative"]
            sessions = {s.link: s for s in hub.sessions()}
            ids = {name: sessions[links[name]].id for name in people}

            # both run until each page's transcript holds its sentence's sentiment words and
            # four windows read words (Chromium loops the clip: on a busy machine it only takes longer)
            wanted = {"positive": POSITIVE_WORDS, "negative": NEGATIVE_WORDS}

            def transcript(p) -> str:
                return p.page.get_by_test_id("transcript").inner_text().lower()

            def felt(name: str, p) -> list[dict]:
                """Its windows that read one of its sentence's sentiment words."""
                return [w for w in _worded(p.windows(ids[name])) if re.search(wanted[name], _text(w).lower())]

            def ready(name: str, p) -> bool:
                return (len(_worded(p.windows(ids[name]))) >= 4 and len(felt(name, p)) >= 2
                        and re.search(wanted[name], transcript(p)) is not None)

            _wait_for(people, lambda: all(ready(n, p) for n, p in people.items()))
            for name, p in people.items():
                if not ready(name, p):
                    print(name, p.errors, json.dumps(hub.stats(), default=str, indent=1), file=__import__("sys").stderr)
                assert ready(name, p), (
                    name, transcript(p), len(_worded(p.windows(ids[name]))), len(p.windows()), len(p.frames),
                    [m.get("type") for m in p.frames][:20], p.page.get_by_test_id("capture-status").inner_text(),
                    p.errors, json.dumps(hub.stats(), default=str)[:3000])

            texts = {name: transcript(p) for name, p in people.items()}
            assert re.search(POSITIVE_WORDS, texts["positive"]) and not re.search(NEGATIVE_WORDS, texts["positive"]), texts
            assert re.search(NEGATIVE_WORDS, texts["negative"]) and not re.search(POSITIVE_WORDS, texts["negative"]), texts

            for name, p in people.items():
                mine = p.windows(ids[name])
                # neither sees the other's windows: every window its page received is its own session's
                assert {w["session"] for w in p.windows()} == {ids[name]}, name
                # the windows that read the sentence's sentiment words score with its sign; the
                # others read a clip start the recogniser mishears now and then (Chromium loops
                # the clip from any point: "i absolutely love this" came out as "the lootly lump
                # is, it is", which the model scores -0.38)
                read = [(round(w["score"], 2), _text(w)) for w in _worded(mine)]
                print(name, "windows with words (score, words):", read, file=__import__("sys").stderr)
                scores = [w["score"] for w in felt(name, p)]
                mean = sum(scores) / len(scores)
                assert (mean > 0) if name == "positive" else (mean < 0), (name, read)
                # what the page shows now is one of its own windows (read the page first: it may
                # have moved on since `mine` was taken, and its websocket frame reaches us after)
                seq = int(p.page.get_by_test_id("score").get_attribute("data-seq"))
                assert _wait_for({name: p}, lambda: seq in {w["seq"] for w in p.windows(ids[name])}), (name, seq)
            assert {people["positive"].page.get_by_test_id("session-id").inner_text(),
                    people["negative"].page.get_by_test_id("session-id").inner_text()} == {f"session {i}" for i in ids.values()}

            # the operator view lists both live sessions with their figures
            ops = people["negative"].browser.new_page()
            ops.goto(srv.url + "operator")
            for sid in ids.values():
                ops.locator(f'[data-testid="operator-table"] tr[data-session="{sid}"]').wait_for(timeout=WAIT * 1000)
            assert "2 of 2 sessions live" in ops.get_by_test_id("operator-summary").inner_text()
            ops.close()

            # the positive person's browser goes away mid-session: its session ends, its recording reads
            people["positive"].browser.close()
            _wait_for({"negative": people["negative"]}, lambda: all(s.id != ids["positive"] for s in hub.sessions()),
                      step_ms=200)
            ended = next(s for s in hub.sessions(live_only=False) if s.id == ids["positive"])
            assert not ended.live, "closing the browser did not end its session"
            rec = read_session(pathlib.Path(hub.config.record_dir) / ids["positive"])
            assert rec.info["recording"]["ended_at"] is not None
            # every window the page was sent is recorded (by seq: a live window may be sent
            # again as a revision, and the recording keeps its last one)
            assert {w["seq"] for w in rec.windows} >= {w["seq"] for w in people["positive"].windows(ids["positive"])}
            assert any(w["words"] for w in rec.windows) and rec.audio_path is not None
            # the other goes on
            n = len(people["negative"].windows(ids["negative"]))
            assert _wait_for({"negative": people["negative"]}, lambda: len(people["negative"].windows(ids["negative"])) > n)

            # stop: the page says so, the session ends
            people["negative"].page.get_by_test_id("capture-stop").click()
            status = people["negative"].page.get_by_test_id("capture-status")
            _wait_for({"negative": people["negative"]}, lambda: status.get_attribute("data-state") == "stopped", step_ms=100)
            assert status.get_attribute("data-state") == "stopped", status.inner_text()
            for name, p in people.items():
                assert not [e for e in p.errors if "favicon" not in e], (name, p.errors)
        finally:
            for p in people.values():
                try:
                    p.browser.close()
                except Exception:
                    pass
