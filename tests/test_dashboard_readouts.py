"""The readouts on the dashboard (a panel per face, one for the voice, help texts, "not
scored") at desktop and phone sizes, with screenshots in docs/; the CSV export's readout
columns; and labelling a replayed recording with the keyboard into labels.json (headless
Chromium, the real DashboardServer)."""

from __future__ import annotations

import json
import math
import os
import pathlib

import pytest
from test_dashboard import DashboardPage, browser  # noqa: F401  (browser is a fixture)
from test_dashboard_person import DESKTOP, LAYOUT_PROBE, PHONE, download_csv, hello_with, make_video, open_page  # noqa: F401
from test_server import make_window

from hcl.data.recordings import find_recordings, read_labels
from hcl.features.readouts import READOUT_HELP, VOICE_HELP, FaceSummary, VoiceReadouts, WindowReadouts
from realtime.core import protocol
from realtime.recording import SessionRecorder, read_session
from realtime.web.server import DashboardServer

ROOT = pathlib.Path(__file__).resolve().parents[1]
# screenshots go to artifacts/ (git-ignored); HCL_DOC_SCREENSHOTS=1 writes the ones docs/ shows
SHOTS = ROOT / ("docs" if os.environ.get("HCL_DOC_SCREENSHOTS") else "artifacts")
TRIMODAL = {"name": "hcl-test", "version": "0", "inputs": ["text", "audio", "video"]}


def readouts(seq: int, start: float, end: float) -> dict:
    """Schema-true readouts (hcl.features.readouts) that vary over time: face 1 (the speaker)
    smiles more and more, face 2 nods from seq 10 on and leaves at seq 30; a voice."""
    s = seq / 40
    faces = [FaceSummary(face_id=1, speaker=True, frames=40, smile=min(1.0, 0.1 + s), frown=0.05, brow_lowered=0.1,
                         brow_raised=0.3 + 0.2 * math.sin(seq / 4), eyes_widened=0.1, jaw_open=0.2 + 0.15 * math.sin(seq),
                         head_movement=4.0 + 2 * math.sin(seq / 3))]
    if seq < 30:
        faces.append(FaceSummary(face_id=2, speaker=False, frames=38, smile=0.05, frown=0.3, brow_lowered=0.5,
                                 brow_raised=0.05, eyes_widened=0.2, jaw_open=0.05,
                                 head_movement=35.0 if seq >= 10 else 3.0))
    voice = VoiceReadouts(t0=start, t1=end, loudness_dbfs=-22 + 4 * math.sin(seq / 5),
                          pitch_hz=None if seq % 9 == 8 else 180 + 30 * math.sin(seq / 6),
                          pitch_variability_st=None if seq % 9 == 8 else 2.5 + math.sin(seq / 2),
                          voiced_fraction=0.4, speaking_rate=2.0 + 0.5 * math.sin(seq / 4), words=8, pauses=seq % 3,
                          pause_seconds=0.4 * (seq % 3))
    return WindowReadouts(start, end, 40, tuple(faces), voice).to_dict()


def window_with_readouts(seq: int, session: str = "test-session") -> dict:
    w = make_window(seq, session=session)
    w["readouts"] = readouts(seq, w["start"], w["end"])
    return w


def test_help_texts_are_the_library_s(open_page):
    """The page's one-sentence help per readout is hcl.features.readouts' (no drift)."""
    with DashboardServer(hello=hello_with(TRIMODAL)) as srv:
        dash = open_page(srv.url)
        js = dash.page.evaluate("async () => { const m = await import('./readouts.js'); return [m.FACE_HELP, m.VOICE_HELP]; }")
        assert js == [READOUT_HELP, VOICE_HELP]
        shown = dash.page.evaluate(
            "() => Object.fromEntries([...document.querySelectorAll('[data-help]')].map((e) => [e.dataset.help, e.textContent]))")
        assert shown == {**READOUT_HELP, **VOICE_HELP}


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_readouts_panels_per_face_and_voice(open_page, tmp_path, viewport):
    name = "desktop" if viewport is DESKTOP else "phone"
    with DashboardServer(hello=hello_with(TRIMODAL)) as srv:
        for seq in range(25):
            srv.publish(window_with_readouts(seq))
        dash = open_page(srv.url, viewport=viewport)
        dash.wait_for_seq(24)
        page = dash.page
        page.wait_for_selector('[data-testid="readouts-card"][data-state="shown"]')
        panels = page.locator('[data-testid="face-panel"]')
        assert panels.count() == 2
        assert [panels.nth(i).get_attribute("data-face-id") for i in range(2)] == ["1", "2"]
        assert panels.nth(0).get_attribute("data-speaker") == "true" and panels.nth(1).get_attribute("data-speaker") == "false"
        assert "speaker" in panels.nth(0).locator("h3").inner_text()
        # a strip per readout, the value on show is the window's
        for i, face in enumerate(readouts(24, 12.0, 16.0)["faces"]):
            rows = panels.nth(i).locator("li.readout")
            assert rows.count() == 7 and panels.nth(i).locator("svg.strip").count() == 7
            assert float(panels.nth(i).locator('[data-testid="readout-smile"]').get_attribute("data-value")) == face["smile"]
            assert float(panels.nth(i).locator('[data-testid="readout-head_movement"]').get_attribute("data-value")) == face["head_movement"]
        voice = page.locator('[data-testid="voice-panel"]')
        assert voice.locator("li.readout").count() == 7
        assert float(voice.locator('[data-testid="readout-pitch_hz"]').get_attribute("data-value")) == pytest.approx(
            readouts(24, 12.0, 16.0)["voice"]["pitch_hz"])
        note = page.locator('[data-testid="readouts-note"]')
        assert "do not change the score" in note.inner_text()
        note.scroll_into_view_if_needed()
        assert note.is_visible()
        # each readout row says what it measures (a tooltip), and the help lists every readout
        assert page.locator('li.readout[data-readout="smile"]').first.get_attribute("title") == READOUT_HELP["smile"]
        probe = page.evaluate(LAYOUT_PROBE)
        assert probe["scrollWidth"] <= viewport["width"] and probe["badControls"] == [], probe
        assert probe["overlaps"] == [], probe
        page.locator('[data-testid="readouts-help"] summary').click()
        assert page.locator('[data-help="pitch_hz"]').is_visible()
        page.locator('[data-testid="readouts-help"] summary').click()
        if viewport is DESKTOP:
            page.screenshot(path=str(SHOTS / f"readouts-{name}.png"))
        else:
            page.locator('[data-testid="readouts-card"]').screenshot(path=str(SHOTS / f"readouts-{name}.png"))
        # the CSV export carries the readout columns
        rows = download_csv(dash, tmp_path)
        assert list(rows[0]) == list(protocol.CSV_COLUMNS)
        assert rows[-1]["faces"] == "2" and rows[-1]["speaker_face_id"] == "1"
        assert float(rows[-1]["speaker_smile"]) == readouts(24, 12.0, 16.0)["faces"][0]["smile"]
        assert [f["face_id"] for f in json.loads(rows[-1]["faces_json"])] == [1, 2]
        assert dash.console_errors == []


def test_a_face_that_left_is_shown_as_not_in_view(open_page):
    with DashboardServer(hello=hello_with(TRIMODAL)) as srv:
        for seq in range(34):
            srv.publish(window_with_readouts(seq))
        dash = open_page(srv.url)
        dash.wait_for_seq(33)
        panel = dash.page.locator('[data-testid="face-panel"][data-face-id="2"]')
        assert panel.get_attribute("data-in-view") == "false" and "not in view" in panel.inner_text()


def test_windows_without_readouts_say_so(open_page):
    with DashboardServer(hello=hello_with(TRIMODAL)) as srv:
        for seq in range(3):
            srv.publish(make_window(seq))
        dash = open_page(srv.url)
        dash.wait_for_seq(2)
        assert dash.page.locator('[data-testid="face-panel"]').count() == 0
        assert "no readouts" in dash.page.locator('[data-testid="readouts-summary"]').inner_text()


def recorded_with_readouts(folder: pathlib.Path, n: int, seconds: float) -> None:
    with SessionRecorder(folder, session_info={"session": "rec-1", "model": TRIMODAL}) as rec:
        for seq in range(n):
            win = window_with_readouts(seq, session="rec-1")
            rec.write_window(win)
            rec.add_words(win["words"])
    make_video(folder / "video.mp4", seconds)


def test_replay_shows_readouts_and_labels_spans_with_the_keyboard(open_page, tmp_path):
    folder = tmp_path / "recorded"
    recorded_with_readouts(folder, 24, 16)  # window ends 4.0 .. 15.5 s
    recorded = read_session(folder)
    assert recorded.windows[5]["readouts"] == readouts(5, 2.5, 6.5)  # kept in the recording as sent
    hello = hello_with(TRIMODAL, session="rec-1", mode="replay")
    with DashboardServer(hello=hello, session=recorded.session_message(), recording=folder) as srv:
        dash = open_page(srv.url)
        page = dash.page
        page.wait_for_selector('[data-testid="chart"][data-count="24"]')
        # the readouts follow the replay position
        page.locator('[data-testid="timeline"]').fill("6")
        dash.wait_for_seq(6)
        smile = page.locator('[data-testid="face-panel"][data-face-id="1"] [data-testid="readout-smile"]')
        assert float(smile.get_attribute("data-value")) == readouts(6, 3.0, 7.0)["faces"][0]["smile"]
        card = page.locator('[data-testid="labels-card"]')
        assert card.is_visible()
        page.wait_for_function("() => document.querySelector('[data-testid=replay-video]').readyState >= 1", timeout=15000)

        def seek(t: float) -> None:
            page.evaluate(f"() => {{ document.querySelector('[data-testid=replay-video]').currentTime = {t}; }}")
            page.wait_for_function(
                f"() => Math.abs(document.querySelector('[data-testid=replay-video]').currentTime - {t}) < 0.05")

        page.locator("body").click(position={"x": 5, "y": 5})  # focus the page, not a control
        seek(2.0)
        page.keyboard.press("[")
        seek(5.0)
        page.keyboard.press("]")
        assert "0:02.0–0:05.0" in page.locator('[data-testid="labels-mark"]').inner_text()
        page.keyboard.press("-")
        page.keyboard.press("2")
        page.wait_for_selector('[data-testid="labels-list"] li[data-label="-2"]')
        seek(9.0)
        page.keyboard.press("[")
        seek(12.5)
        page.keyboard.press("]")
        page.keyboard.press("3")
        page.wait_for_selector('[data-testid="labels-list"] li[data-label="3"]')
        assert "Saved" in page.locator('[data-testid="labels-status"]').inner_text()
        spans = read_labels(folder)
        assert [(s.start, s.end, s.label) for s in spans] == [(2.0, 5.0, -2.0), (9.0, 12.5, 3.0)]
        assert find_recordings([folder]) == [folder]  # what hcl-extract takes as a labelled recording
        # a new span over an old one replaces it; Delete removes the label at the current time
        seek(4.0)
        page.keyboard.press("[")
        seek(7.0)
        page.keyboard.press("]")
        page.keyboard.press("1")
        page.wait_for_selector('[data-testid="labels-list"] li[data-label="1"]')
        assert [(s.start, s.end, s.label) for s in read_labels(folder)] == [(4.0, 7.0, 1.0), (9.0, 12.5, 3.0)]
        seek(10.0)
        page.keyboard.press("Delete")
        page.wait_for_function("() => document.querySelectorAll('[data-testid=labels-list] li').length === 1")
        assert [(s.start, s.end, s.label) for s in read_labels(folder)] == [(4.0, 7.0, 1.0)]
        # a span shorter than 0.5 s is refused on the page, nothing is written
        seek(13.0)
        page.keyboard.press("[")
        seek(13.2)
        page.keyboard.press("]")
        page.keyboard.press("2")
        assert "at least 0.5 s" in page.locator('[data-testid="labels-status"]').inner_text()
        assert len(read_labels(folder)) == 1
        # a reloaded page gets the saved labels back
        page.reload()
        page.wait_for_selector('[data-testid="labels-list"] li[data-label="1"]')
        page.screenshot(path=str(SHOTS / "replay-labels-desktop.png"))
        assert dash.console_errors == []


def test_labels_are_refused_on_a_live_page(tmp_path):
    """Only a replayed recording takes labels: a live server answers set_label with an error."""
    from websockets.sync.client import connect

    with DashboardServer(hello=hello_with(TRIMODAL)) as srv:
        with connect(srv.ws_url) as ws:
            ws.send(json.dumps({"type": "set_label", "start": 1, "end": 3, "label": 2}))
            for _ in range(10):
                msg = json.loads(ws.recv(10))
                if msg["type"] == "error":
                    assert "hcl-replay" in msg["message"]
                    break
            else:
                raise AssertionError("no error for a label on a live page")


def test_fer_probabilities_are_labelled_as_an_uncalibrated_classifier(open_page):
    w = window_with_readouts(0)
    w["readouts"]["faces"][0]["uncalibrated_expression"] = {
        "angry": 0.05, "disgust": 0.01, "fear": 0.06, "happy": 0.09, "sad": 0.18, "surprise": 0.02, "neutral": 0.59}
    with DashboardServer(hello=hello_with(TRIMODAL)) as srv:
        srv.publish(w)
        dash = open_page(srv.url)
        dash.wait_for_seq(0)
        line = dash.page.locator('[data-testid="face-panel"][data-face-id="1"] .expression')
        assert line.inner_text() == ("Uncalibrated FER2013 classifier (not what the person feels): "
                                     "neutral 0.59 · sad 0.18 · happy 0.09")
        assert line.get_attribute("title") == READOUT_HELP["uncalibrated_expression"]
        assert dash.page.locator('[data-testid="face-panel"][data-face-id="2"] .expression').count() == 0
