"""SessionRecorder writes a session folder; read_session reads it back, even after kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import wave

import numpy as np
import pytest

from realtime.core import protocol
from realtime.recording import (
    RecorderClosed,
    SessionError,
    SessionRecorder,
    read_session,
    read_wav,
    vtt_timestamp,
)
from realtime.recording.wav import WavWriter

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INFO = {"session": "rec-test", "model": {"name": "hcl-test", "version": "0"}, "settings": {"step_seconds": 0.5}}


def window(seq: int, session: str = "rec-test") -> dict:
    words = [{"w": f"word{seq}", "start": seq * 0.5 + 3.0, "end": seq * 0.5 + 3.3}]
    return protocol.window_message(
        session=session, seq=seq, start=seq * 0.5, end=seq * 0.5 + 4.0, score=np.sin(seq / 2) * 2.5,
        presence={"text": True, "audio": seq % 2 == 0, "video": True}, words=words,
    )


def test_write_then_read_back(tmp_path):
    folder = tmp_path / "session"
    tone = (0.4 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000)).astype(np.float32)
    rng = np.random.default_rng(0)
    with SessionRecorder(folder, session_info=INFO, video_fps=10) as rec:
        for seq in range(12):
            rec.write_window(window(seq))
            rec.add_words([{"w": f"word{seq}", "start": seq * 0.5 + 3.0, "end": seq * 0.5 + 3.3}])
            rec.write_audio(tone)
        for i in range(25):
            frame = rng.integers(0, 255, size=(121, 161, 3), dtype=np.uint8)  # odd sizes are cropped to even
            rec.write_frame(frame, t=i / 10, score=0.1 * i - 1)
        rec.write_frame(frame, t=2.4)  # same slot as the previous frame: skipped

    s = read_session(folder)
    assert [w["seq"] for w in s.windows] == list(range(12))
    assert s.windows[3] == window(3)
    assert not s.truncated
    assert [w["w"] for w in s.words] == [f"word{i}" for i in range(12)]
    assert s.info["session"] == "rec-test" and s.info["model"]["name"] == "hcl-test"
    rec_info = s.info["recording"]
    assert rec_info["started_at"] and rec_info["ended_at"] and rec_info["windows"] == 12
    assert rec_info["video_frames"] == 25 and rec_info["audio_seconds"] == pytest.approx(6.0)
    assert "numpy" in rec_info["versions"]

    msg = s.session_message()
    assert msg["type"] == "session" and msg["session"] == "rec-test" and len(msg["windows"]) == 12

    vtt = (folder / "transcript.vtt").read_text()
    assert vtt.startswith("WEBVTT\n\n")
    assert "00:00:03.000 --> " in vtt and "word0 word1" in vtt and "word11" in vtt

    # wav: the standard library reads it, and so does read_wav
    with wave.open(str(folder / "audio.wav")) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, 16000, 12 * 8000)
    audio, rate = s.read_audio()
    assert rate == 16000 and audio.shape == (96000,)
    assert np.abs(audio[:8000] - tone).max() < 1e-3

    # video: H.264 that PyAV decodes, frames at 10 fps
    import av

    with av.open(str(s.video_path)) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(stream)]
    assert len(frames) == 25 and frames[0].shape == (120, 160, 3)


def test_score_is_drawn_on_the_video(tmp_path):
    grey = np.full((240, 320, 3), 128, np.uint8)
    with SessionRecorder(tmp_path / "s", session_info=INFO, video_queue=0) as rec:  # encode in this thread
        rec.write_frame(grey, t=0.0, score=2.5)
    import av

    with av.open(str(tmp_path / "s" / "video.mp4")) as c:
        frame = next(c.decode(video=0)).to_ndarray(format="rgb24")
    top, bottom = frame[:30], frame[120:]
    assert np.abs(bottom.astype(int) - 128).max() < 12  # untouched area
    assert top.mean() < 90  # the darkened banner behind the text
    greenish = (top[..., 1].astype(int) - top[..., 0]) > 40  # the positive score's green text
    assert greenish.sum() > 50


def test_write_frame_never_waits_for_the_encoder(tmp_path):
    import time

    frame = np.random.default_rng(1).integers(0, 255, size=(480, 640, 3), dtype=np.uint8)
    with SessionRecorder(tmp_path / "s", session_info=INFO, video_queue=4) as rec:
        costs = []
        for i in range(60):
            t0 = time.perf_counter()
            rec.write_frame(frame, t=i / 10)
            costs.append(time.perf_counter() - t0)
    assert max(costs) < 0.05, f"write_frame took {max(costs) * 1000:.0f} ms"
    info = read_session(tmp_path / "s").info["recording"]
    assert info["video_frames"] + info["video_frames_dropped"] == 60 and info["video_frames"] >= 4
    import av

    with av.open(str(tmp_path / "s" / "video.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == info["video_frames"]


CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    sys.path.insert(0, {repo!r})
    from realtime.recording import SessionRecorder
    from realtime.core import protocol
    rec = SessionRecorder({folder!r}, session_info={{"session": "killed"}})
    seq = 0
    while True:
        rec.write_window(protocol.window_message(session="killed", seq=seq, start=seq * 0.5, end=seq * 0.5 + 4,
                                                 score=0.1 * (seq % 30) - 1.5, presence={{"text": True}},
                                                 words=[{{"w": "w%d" % seq, "start": seq * 0.5, "end": seq * 0.5 + 0.2}}]))
        rec.add_words([{{"w": "w%d" % seq, "start": seq * 0.5, "end": seq * 0.5 + 0.2}}])
        rec.write_audio(np.full(1600, 0.25, np.float32))
        print("wrote", seq, flush=True)
        seq += 1
    """
)


def test_kill_9_leaves_every_finished_window_readable(tmp_path):
    folder = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(repo=REPO, folder=str(folder))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    finished = -1
    try:
        for line in proc.stdout:
            finished = int(line.split()[1])
            if finished >= 40:
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert finished >= 40, proc.stderr.read()
    s = read_session(folder)
    seqs = [w["seq"] for w in s.windows]
    assert seqs[: finished + 1] == list(range(finished + 1)), "every window the child finished must be there"
    assert seqs == list(range(len(seqs)))
    assert s.info["session"] == "killed" and s.info["recording"]["ended_at"] is None
    # words.jsonl is appended with every batch: it alone holds every finished word
    on_file = [json.loads(line)["w"] for line in (folder / "words.jsonl").read_text().splitlines()[:finished + 1]]
    assert on_file == [f"w{i}" for i in range(finished + 1)]
    assert [w["w"] for w in s.words][: finished + 1] == [f"w{i}" for i in range(finished + 1)]
    audio, rate = read_wav(folder / "audio.wav")
    assert rate == 16000 and len(audio) >= (finished + 1) * 1600
    assert np.allclose(audio[:1600], 0.25, atol=1e-3)


def test_truncated_last_line_is_skipped(tmp_path):
    folder = tmp_path / "cut"
    with SessionRecorder(folder, session_info=INFO) as rec:
        for seq in range(5):
            rec.write_window(window(seq))
    with open(folder / "scores.jsonl", "a") as f:
        f.write(json.dumps(window(5))[:57])  # what a kill -9 mid-write leaves
    s = read_session(folder)
    assert [w["seq"] for w in s.windows] == list(range(5)) and s.truncated


def test_damaged_middle_line_names_file_and_line(tmp_path):
    folder = tmp_path / "damaged"
    with SessionRecorder(folder, session_info=INFO) as rec:
        for seq in range(3):
            rec.write_window(window(seq))
    lines = (folder / "scores.jsonl").read_text().splitlines()
    lines[1] = lines[1][:20]
    (folder / "scores.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(SessionError, match=r"scores\.jsonl, line 2"):
        read_session(folder)


def test_not_a_session_says_which_folder(tmp_path):
    with pytest.raises(SessionError, match=str(tmp_path)):
        read_session(tmp_path)
    with pytest.raises(SessionError, match="is not a folder"):
        read_session(tmp_path / "missing")


def test_writes_after_close_are_refused_clearly(tmp_path):
    rec = SessionRecorder(tmp_path / "s", session_info=INFO)
    rec.stop()
    rec.stop()  # idempotent
    rec.join()
    for write in (lambda: rec.write_window(window(0)), lambda: rec.add_words([{"w": "x", "start": 0, "end": 1}]),
                  lambda: rec.write_audio(np.zeros(10, np.float32)), lambda: rec.write_frame(np.zeros((8, 8, 3), np.uint8), 0)):
        with pytest.raises(RecorderClosed, match="is closed"):
            write()


def test_recorder_refuses_to_overwrite_a_session(tmp_path):
    with SessionRecorder(tmp_path / "s", session_info=INFO):
        pass
    with pytest.raises(FileExistsError, match="already holds a recorded session"):
        SessionRecorder(tmp_path / "s", session_info=INFO)


def test_wav_with_unpatched_header_is_recovered(tmp_path):
    path = tmp_path / "a.wav"
    w = WavWriter(path)
    w.write(np.linspace(-0.5, 0.5, 3200, dtype=np.float32))
    w.close()
    good = path.read_bytes()
    assert len(good) == 44 + 6400
    # a recorder killed after writing the data but before patching the sizes
    path.write_bytes(good[:4] + b"\0\0\0\0" + good[8:40] + b"\0\0\0\0" + good[44:])
    audio, rate = read_wav(path)
    assert rate == 16000 and len(audio) == 3200 and audio[0] == pytest.approx(-0.5, abs=1e-3)
    # a header that claims more than the file holds, the last sample cut in half
    path.write_bytes(good[:40] + (10**6).to_bytes(4, "little") + good[44:-1])
    assert len(read_wav(path)[0]) == 3199


def test_vtt_timestamp():
    assert vtt_timestamp(0) == "00:00:00.000"
    assert vtt_timestamp(3723.4567) == "01:02:03.457"


def test_recorder_follows_the_component_contract(tmp_path):
    """start() has nothing to do, the encoder Worker starts with the first frame, stop()
    finishes the files (idempotent), join() waits for the encoder, whose thread is gone."""
    from realtime.core.component import Component

    rec = SessionRecorder(tmp_path / "s", session_info=INFO, video_queue=4)
    assert isinstance(rec, Component)
    rec.start()
    rec.start()
    assert rec.thread is None and rec.stats()["encoder_running"] is False
    rec.write_window(window(0), audio=np.zeros(8000, np.float32))
    for i in range(5):
        rec.write_frame(np.full((48, 64, 3), 40 * i, np.uint8), t=i / 10)
    assert rec.thread is not None and rec.thread.name == "session-video" and rec.stats()["encoder_running"]
    rec.stop()
    rec.stop()
    rec.join(5)
    assert not rec.thread.is_alive() and rec.stats()["encoder_running"] is False
    assert rec.stats()["recording"] is False and rec.error is None
    with pytest.raises(RecorderClosed):
        rec.write_frame(np.zeros((48, 64, 3), np.uint8), t=1.0)
    info = read_session(tmp_path / "s").info["recording"]
    assert info["ended_at"] is not None and info["windows"] == 1
    assert info["video_frames"] + info["video_frames_dropped"] == 5
