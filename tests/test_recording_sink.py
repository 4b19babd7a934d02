"""SessionRecorder fed as the live monitor feeds it: one sink after scoring
(`write_window(msg, audio=, words=)`, the scorer thread) and one frame tap at capture
rate (`write_frame`, the capture thread); words.jsonl appended, memory flat, the
files of format 1 still read."""

from __future__ import annotations

import json
import struct
import threading
import tracemalloc
import wave

import numpy as np
import pytest
from test_reliability import tiny_disk  # a real small tmpfs, one definition for both disk-full tests

from realtime.core import protocol
from realtime.recording import SessionError, SessionRecorder, read_session, read_wav
from realtime.recording.wav import WavWriter

INFO = {"session": "sink-test", "model": {"name": "hcl-test", "version": "0"}}
SR = 16000
STEP = 0.5


def window(seq: int, words: list[dict] | None = None) -> dict:
    return protocol.window_message(
        session="sink-test", seq=seq, start=seq * STEP, end=seq * STEP + 4.0, score=0.2 * (seq % 10) - 1.0,
        presence={"text": True, "audio": True, "video": True}, words=words or [],
    )


def step_audio(seq: int) -> np.ndarray:
    t = (seq * STEP * SR + np.arange(int(STEP * SR))) / SR
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def step_words(seq: int) -> list[dict]:
    """Words newly committed by window `seq` (none on every third window)."""
    if seq % 3 == 2:
        return []
    return [{"w": f"w{seq}_{k}", "start": round(seq * STEP + 0.2 * k, 3), "end": round(seq * STEP + 0.2 * k + 0.15, 3), "p": 0.9}
            for k in range(2)]


def feed(rec: SessionRecorder, n: int, *, first: int = 0) -> None:
    for seq in range(first, first + n):
        rec.write_window(window(seq), audio=step_audio(seq), words=step_words(seq))


# ---------------------------------------------------------------- the two callers
def test_scorer_sink_and_capture_tap_from_their_own_threads(tmp_path):
    folder = tmp_path / "s"
    n_windows, fps = 40, 10
    rgb = np.random.default_rng(0).integers(0, 255, size=(180, 320, 3), dtype=np.uint8)
    errors: list[BaseException] = []

    def scorer(rec):
        try:
            feed(rec, n_windows)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    def capture(rec):
        try:
            for i in range(int(n_windows * STEP * fps)):
                rec.write_frame(rgb, i / fps)
        except BaseException as exc:
            errors.append(exc)

    with SessionRecorder(folder, session_info=INFO, video_fps=fps) as rec:
        threads = [threading.Thread(target=scorer, args=(rec,)), threading.Thread(target=capture, args=(rec,))]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        live = rec.stats()
    assert not errors, errors
    assert live["recording"] and live["windows"] == n_windows and live["error"] is None
    assert live["words"] == sum(len(step_words(s)) for s in range(n_windows))
    assert live["audio_seconds"] == pytest.approx(n_windows * STEP)

    s = read_session(folder)
    assert [w["seq"] for w in s.windows] == list(range(n_windows))
    assert [w["w"] for w in s.words] == [w["w"] for seq in range(n_windows) for w in step_words(seq)]
    rec_info = s.info["recording"]
    assert rec_info["format"] == 2 and rec_info["files"]["words"] == "words.jsonl"
    assert rec_info["video_frames"] + rec_info["video_frames_dropped"] == n_windows * STEP * fps
    with wave.open(str(folder / "audio.wav")) as w:
        assert w.getnframes() == n_windows * STEP * SR
    audio, _ = s.read_audio()
    assert np.abs(audio - np.concatenate([step_audio(q) for q in range(n_windows)])).max() < 1e-3

    import av

    with av.open(str(folder / "video.mp4")) as c:
        assert {st.codec_context.name for st in c.streams} == {"h264", "aac"}
        seconds = sum(f.samples / f.sample_rate for f in c.decode(audio=0))
    assert seconds == pytest.approx(n_windows * STEP, abs=0.15)


def test_write_window_keywords_equal_the_separate_calls(tmp_path):
    """The sink's audio= / words= write exactly what write_audio / add_words write."""
    a, b = tmp_path / "a", tmp_path / "b"
    with SessionRecorder(a, session_info=INFO, fsync=False) as rec:
        feed(rec, 30)
    with SessionRecorder(b, session_info=INFO, fsync=False) as rec:
        for seq in range(30):
            rec.write_window(window(seq))
            rec.write_audio(step_audio(seq))
            rec.add_words(step_words(seq))
    for name in ("scores.jsonl", "words.jsonl", "transcript.vtt", "audio.wav"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    vtt = (a / "transcript.vtt").read_text()
    assert vtt.startswith("WEBVTT\n\n") and "w28_1" in vtt.split()


def test_empty_audio_and_no_words_write_the_window_only(tmp_path):
    with SessionRecorder(tmp_path / "s", session_info=INFO) as rec:
        rec.write_window(window(0), audio=None, words=None)
        rec.write_window(window(1), audio=np.zeros(0, np.float32), words=[])
        assert rec.stats()["audio_seconds"] == 0 and rec.stats()["words"] == 0
    s = read_session(tmp_path / "s")
    assert len(s.windows) == 2 and s.words == [] and s.audio_path is None


# ---------------------------------------------------------------- flat for a long session
def test_words_file_is_appended_never_rewritten(tmp_path):
    folder = tmp_path / "s"
    with SessionRecorder(folder, session_info=INFO, fsync=False) as rec:
        sizes, heads = [], []
        for seq in range(60):
            rec.write_window(window(seq), words=step_words(seq))
            data = (folder / "words.jsonl").read_bytes()
            sizes.append(len(data))
            heads.append(data)
    # each batch adds its own lines and nothing else: earlier bytes never change
    for i in range(1, len(heads)):
        assert heads[i].startswith(heads[i - 1])
        new_lines = heads[i][len(heads[i - 1]):].decode().splitlines()
        assert [json.loads(line) for line in new_lines] == step_words(i)
    assert not (folder / "words.json").exists()


def _sizes(obj, seen=None) -> dict[str, int]:
    """len() of every list/deque/dict/set held by the recorder and its writer objects."""
    seen = set() if seen is None else seen
    out: dict[str, int] = {}
    if id(obj) in seen:
        return out
    seen.add(id(obj))
    for name, value in vars(obj).items():
        if isinstance(value, (list, dict, set, tuple)) or type(value).__name__ == "deque":
            out[name] = len(value)
        elif type(value).__module__.startswith("realtime.recording"):
            out.update({f"{name}.{k}": v for k, v in _sizes(value, seen).items()})
    return out


def test_recorder_memory_does_not_grow_with_the_session(tmp_path):
    """Nothing the recorder holds grows with the windows, words and audio it wrote
    (a list of every word, kept for a whole-file rewrite, would)."""
    with SessionRecorder(tmp_path / "s", session_info=INFO, fsync=False, audio=False) as rec:
        feed(rec, 200)
        early = _sizes(rec)
        tracemalloc.start()
        try:
            feed(rec, 200, first=200)
            base = tracemalloc.get_traced_memory()[0]
            feed(rec, 2000, first=400)  # about 2700 more words, 17 more minutes of audio
            grown = tracemalloc.get_traced_memory()[0] - base
        finally:
            tracemalloc.stop()
        late = _sizes(rec)
    assert late.keys() == early.keys() and max(late.values()) <= 10, f"containers grew: {early} -> {late}"
    assert grown < 64 * 1024, f"{grown / 1024:.0f} KiB held after 2000 more windows"


# ---------------------------------------------------------------- files written before (format 1)
def _format1_header(n_bytes: int) -> bytes:
    """The header the format-1 recorder wrote by hand (sizes patched in place)."""
    return (
        b"RIFF" + struct.pack("<I", 36 + n_bytes) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, SR, SR * 2, 2, 16)
        + b"data" + struct.pack("<I", n_bytes)
    )


def test_a_format_1_session_with_words_json_is_read(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "session.json").write_text(json.dumps({"session": "old", "recording": {"format": 1}}) + " " * 100)
    wins = [window(seq, words=step_words(seq)) for seq in range(6)]
    (folder / "scores.jsonl").write_text("".join(json.dumps(w) + "\n" for w in wins))
    # words.json lagged behind the windows (rewritten every 2 s): the windows fill in the rest
    (folder / "words.json").write_text(json.dumps([w for seq in range(3) for w in step_words(seq)]))
    pcm = (np.linspace(-0.5, 0.5, 1600) * 32767).astype("<i2").tobytes()
    (folder / "audio.wav").write_bytes(_format1_header(len(pcm)) + pcm)
    s = read_session(folder)
    assert [w["w"] for w in s.words] == [w["w"] for seq in range(6) for w in step_words(seq)]
    audio, rate = s.read_audio()
    assert rate == SR and len(audio) == 1600 and audio[-1] == pytest.approx(0.5, abs=1e-3)
    with wave.open(str(folder / "audio.wav")) as w:  # the new writer's format is the same
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, SR)


def test_words_jsonl_cut_by_a_kill_or_damaged(tmp_path):
    folder = tmp_path / "s"
    with SessionRecorder(folder, session_info=INFO) as rec:
        feed(rec, 4)
    words_file = folder / "words.jsonl"
    whole = words_file.read_bytes()
    words_file.write_bytes(whole + b'{"w":"cut","sta')  # a kill -9 mid-line
    assert [w["w"] for w in read_session(folder).words][-1] == "w3_1"
    lines = whole.decode().splitlines()
    lines[1] = lines[1][:9]
    words_file.write_text("\n".join(lines) + "\n")
    with pytest.raises(SessionError, match=r"words\.jsonl, line 2"):
        read_session(folder)


# ---------------------------------------------------------------- audio.wav with the wave module
def test_wav_header_matches_the_data_after_every_write(tmp_path):
    """What keeps a killed recording's audio readable: after each write (writer still
    open, nothing closed) the standard library reads every sample written so far."""
    path = tmp_path / "a.wav"
    writer = WavWriter(path)
    written = 0
    for seq in range(5):
        chunk = step_audio(seq)
        writer.write(chunk)
        written += len(chunk)
        with wave.open(str(path)) as w:
            assert w.getnframes() == written
        audio, _ = read_wav(path)
        assert len(audio) == written and np.abs(audio[-len(chunk):] - chunk).max() < 1e-3
    writer.close()
    assert path.stat().st_size == 44 + 2 * written


# ---------------------------------------------------------------- a full disk through the sink


def test_full_disk_in_the_sink_stops_the_recording_only(tmp_path):
    reported: list[str] = []
    rgb = np.zeros((48, 64, 3), np.uint8)
    with tiny_disk(tmp_path, "192k") as disk:
        folder = disk / "s"
        rec = SessionRecorder(folder, session_info=INFO, on_error=reported.append, audio=False)
        for seq in range(400):  # 200 s of 16 kHz audio: 6 MB, far more than the disk holds
            rec.write_window(window(seq), audio=step_audio(seq), words=step_words(seq))  # never raises
            rec.write_frame(rgb, seq * STEP)  # never raises
            if rec.error is not None and seq > rec.windows + 5:
                break
        assert rec.error is not None and "No space left on device" in str(rec.error)
        stats = rec.stats()
        rec.stop()
        rec.join()  # did not raise
        assert reported == [str(rec.error)] and not stats["recording"]
        s = read_session(folder)
        assert [w["seq"] for w in s.windows] == list(range(len(s.windows))) and len(s.windows) >= rec.windows > 0
        assert "No space left on device" in s.info["recording"]["stopped_early"]


def test_hcl_replay_gets_the_words_of_words_jsonl(tmp_path):
    """hcl-replay's session message takes its words from read_session: here the windows
    carry none, so every word must come from words.jsonl."""
    from realtime.app.replay import replay_messages

    folder = tmp_path / "s"
    with SessionRecorder(folder, session_info={**INFO, "settings": {"step_seconds": STEP}}) as rec:
        feed(rec, 12)
    hello, session = replay_messages(str(folder))
    assert hello["mode"] == "replay" and len(session["windows"]) == 12
    assert [w["w"] for w in session["words"]] == [w["w"] for seq in range(12) for w in step_words(seq)]
