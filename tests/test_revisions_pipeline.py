"""Revisions through the whole LivePipeline (real FileSource, windowing, scorer and
SessionRecorder; a scripted transcriber instead of Whisper): the live policy sends
provisional windows and re-scores on commit; the recording holds one row per seq, the
last message of that seq, on committed words; a FAST run (hcl-annotate's policy) of the
same file sends one message per window, never provisional."""

from __future__ import annotations

import json

import numpy as np
from media_fixtures import tone, write_wav

from hcl.features.speech import Word
from realtime.core.component import Policy

SECONDS = 4.0


class Counting:
    """Hears a word every 0.5 s of audio ("good" and "fine" in turn), those wholly inside
    the audio it is given: consecutive passes agree on a prefix, so words are a hypothesis
    after one pass and commit after the next (LocalAgreement-2)."""

    model = object()

    def transcribe(self, wave, offset=0.0):
        end = offset + len(wave) / 16000
        out = []
        for k in range(int(SECONDS * 2)):
            a, b = 0.5 * k + 0.05, 0.5 * k + 0.45
            if a >= offset and b <= end:
                out.append(Word("good" if k % 2 == 0 else "fine", a, b, 0.9))
        return out


def run(tmp_path, live_scorer, policy, **options):
    from realtime.pipeline.live import LivePipeline, PipelineOptions
    from realtime.recording import SessionRecorder
    from realtime.sources.file import FileSource

    path = tmp_path / "speech.wav"
    if not path.exists():
        write_wav(path, np.tile(tone(300, 0.5), int(SECONDS * 2)))  # sound throughout: periodic passes only
    folder = tmp_path / f"rec-{policy.value}"
    published: list[dict] = []
    recorder = SessionRecorder(folder, session_info={"session": "t"}, fsync=False)
    pipeline = LivePipeline(source=FileSource(path=path, policy=policy), scorer=live_scorer, recorder=recorder,
                            options=PipelineOptions(policy=policy, **options), transcriber=Counting(),
                            publish=published.append)
    pipeline.start()
    try:
        assert pipeline.wait(60)
    finally:
        pipeline.stop()
        pipeline.join()
    assert pipeline.problems() == []
    rows = [json.loads(x) for x in (folder / "scores.jsonl").read_text().splitlines()]
    return published, rows, pipeline


def test_live_windows_read_provisional_words_and_are_revised_when_they_commit(tmp_path, live_scorer):
    published, rows, pipeline = run(tmp_path, live_scorer, Policy.LIVE, provisional_words=True)
    seqs = sorted({m["seq"] for m in published})
    assert seqs == list(range(len(seqs))) and len(seqs) >= 6
    assert any(m["provisional"] for m in published)  # windows scored on the hypothesis
    assert any(m["revision"] > 0 for m in published)  # and scored again
    for seq in seqs:  # revisions of a seq come in order, consecutive from 0
        assert [m["revision"] for m in published if m["seq"] == seq] == list(range(sum(m["seq"] == seq for m in published)))
    # provisional words come before they commit: some word is seen provisional first
    first_seen: dict = {}
    for m in published:
        for w in m["words"]:
            first_seen.setdefault((w["w"], w["start"]), bool(w.get("provisional")))
    assert any(first_seen.values())
    # the recording: one row per seq, the last message of that seq, committed words only
    last = {m["seq"]: m for m in published}
    assert [r["seq"] for r in rows] == seqs
    assert rows == [last[s] for s in seqs]
    assert not any(r["provisional"] for r in rows)
    assert all("provisional" not in w for r in rows for w in r["words"])
    stats = pipeline.scoring.stats()
    assert stats["windows"] == len(seqs) and stats["revisions"] == len(published) - len(seqs)
    assert stats["provisional_messages"] == sum(m["provisional"] for m in published)


def test_fast_runs_send_one_message_per_window_and_never_provisional(tmp_path, live_scorer):
    published, rows, pipeline = run(tmp_path, live_scorer, Policy.FAST)
    assert [m["seq"] for m in published] == list(range(len(published))) and len(published) >= 6
    assert all(m["revision"] == 0 and not m["provisional"] for m in published)
    assert rows == published
    assert pipeline.scoring.stats()["revisions"] == 0


def test_live_without_speech_records_each_window_before_sending_it(tmp_path, live_scorer, monkeypatch):
    """No transcript, nothing to revise: the live policy keeps the old order (each window on
    disk before any client sees it), not the open-window deferral."""
    from realtime.pipeline.live import ScoringLoop

    order = []
    original = ScoringLoop.close_open

    def spy(self):
        order.append(self._open)
        return original(self)

    monkeypatch.setattr(ScoringLoop, "close_open", spy)
    published, rows, pipeline = run(tmp_path, live_scorer, Policy.LIVE, transcribe=False)
    assert not pipeline.scoring.revise
    assert all(o is None for o in order)  # no window was ever held open
    assert rows == published and all(m["revision"] == 0 for m in published)
