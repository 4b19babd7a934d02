"""Window revisions and provisional words (issue 8), without Whisper or a model:

- SpeechStream's latest hypothesis (the provisional words) appears before two passes
  agree and is replaced by the committed words (fake clock, scripted transcriber);
- the scoring loop re-scores the open window when its words change, as a higher
  revision of the same seq, shows provisional words marked, and records one row per
  seq with its final, committed words (a real SessionRecorder, read back);
- reproducible and FAST runs refuse the levers and never revise.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from test_speech_stream import make, phrase

from realtime.core.component import Policy
from realtime.pipeline.live import PipelineOptions, ScoringLoop
from realtime.pipeline.windowing import Window, WindowQueue
from realtime.recording import SessionRecorder, read_session


# ------------------------------------------------------------------ speech: provisional words
def test_provisional_words_appear_before_commit_and_are_replaced_by_committed_ones():
    """A long phrase without pauses: after the pass at 1 s its words are only a hypothesis
    (no second pass agrees yet: LocalAgreement-2 alone, settle=None); the pass at 2 s
    commits them and they leave the hypothesis."""
    script = phrase(["one", "two", "three", "four", "five", "six", "seven", "eight"], 0.1)
    seen = []
    stream, _ = make(script, 5.0, catch_up=True, settle=None)
    stream.transcript.on_hypothesis = lambda words: seen.append([w.text for w in words])
    stream.step(1.0, now=1.0)
    hyp = [w.text for w in stream.transcript.hypothesis]
    assert stream.transcript.all_words() == []  # nothing agreed yet
    assert hyp[:2] == ["one", "two"]  # the words heard by the first pass, provisional
    assert [w.text for w in stream.transcript.provisional_words(0.0, 0.6)] == ["one"]  # by midpoint
    stream.step(2.0, now=2.0)
    committed = [w.text for w in stream.transcript.all_words()]
    assert committed[:2] == ["one", "two"]
    assert not {w.text for w in stream.transcript.hypothesis} & set(committed)  # never both
    assert seen and seen[0][:2] == ["one", "two"]  # on_hypothesis told of each change
    stream.finish(5.0, now=5.0)
    assert stream.transcript.hypothesis == ()  # the final pass commits everything


def test_an_unchanged_hypothesis_is_not_announced_again():
    script = phrase(["alpha", "beta"], 0.1)
    calls = []
    stream, _ = make(script, 3.0, catch_up=True, pause_passes=False)
    stream.transcript.on_hypothesis = calls.append
    stream.transcript.hypothesize(list(stream.transcript.hypothesis))
    assert calls == []


# ------------------------------------------------------------------ the scoring loop
class TextScorer:
    """Score = +1 per "good", -1 per "bad" in the window's text (no model); counts calls."""

    def __init__(self):
        self.calls = 0
        self.texts = []

    def encode_text(self, text):
        return None  # no text encoder: `score` reads the window's text

    def score(self, window):
        from realtime.pipeline.scorer import ScoreResult

        self.calls += 1
        self.texts.append(window.text)
        words = window.text.split()
        score = float(words.count("good") - words.count("bad"))
        return ScoreResult(score=score, weights={}, attention=None, text_ms=0.0, model_ms=0.0)


def window(seq: int, words: list[dict]) -> Window:
    from realtime.pipeline.windowing import window_text

    z = np.zeros((8, 2), np.float32)
    m = np.zeros(8, bool)
    text = window_text(words)
    now = time.perf_counter()
    return Window(seq, seq * 0.5, seq * 0.5 + 4.0, z, m, z, m, words, text, {"text": bool(text), "audio": False, "video": False},
                  t_ready=now, t_assembled=now)


class Words:
    """A scripted transcript: committed words and a hypothesis, read like WindowAssembler.words_at."""

    def __init__(self):
        self.committed: list[dict] = []
        self.hypothesis: list[dict] = []

    def __call__(self, end, provisional=False):
        out = [dict(w) for w in self.committed if w["start"] < end]
        if provisional:
            out += [{**w, "provisional": True} for w in self.hypothesis if w["start"] < end]
        return out


def w(text, start):
    return {"w": text, "start": start, "end": start + 0.3}


class Sinks:
    def __init__(self):
        self.recorded: list[dict] = []
        self.published: list[dict] = []
        self.order: list[tuple] = []

    def record(self, msg, window):
        self.recorded.append(msg)
        self.order.append(("record", msg["seq"], msg["revision"]))

    def publish(self, msg):
        self.published.append(msg)
        self.order.append(("publish", msg["seq"], msg["revision"]))


def loop(words, sinks, *, provisional=False, revise=True, record=None):
    return ScoringLoop(queue=WindowQueue(maxsize=4), scorer=TextScorer(), session_id="s",
                       record=record or sinks.record, publish=sinks.publish, words_at=words, revise=revise,
                       provisional=provisional)


def test_a_commit_rescores_the_open_window_as_a_higher_revision_of_the_same_seq():
    words, sinks = Words(), Sinks()
    words.committed = [w("it", 1.0)]
    sl = loop(words, sinks)
    first = sl.handle(window(3, words(5.5)))
    assert (first["seq"], first["revision"], first["score"]) == (3, 0, 0.0)
    assert sl.revise_open() is None  # nothing changed: no message, no scoring
    assert sl.scorer.calls == 1
    words.committed.append(w("good", 1.5))
    again = sl.revise_open()
    assert (again["seq"], again["revision"], again["score"]) == (3, 1, 1.0)
    assert [x["w"] for x in again["words"]] == ["it", "good"] and again["provisional"] is False
    words.committed.append(w("good", 2.0))
    assert sl.revise_open()["revision"] == 2
    assert sinks.recorded == []  # the open window is recorded when it closes...
    sl.handle(window(4, words(6.0)))
    assert [(m["seq"], m["revision"], m["score"]) for m in sinks.recorded] == [(3, 2, 2.0)]  # ...final revision only
    assert sl.scores.count == 1 and sl.revisions == 2
    assert [(m["seq"], m["revision"]) for m in sl.messages] == [(3, 2), (4, 0)]  # the last message per seq
    sl.close_open()
    assert [(m["seq"], m["revision"]) for m in sinks.recorded] == [(3, 2), (4, 0)]
    assert sl.scores.count == 2


def test_a_request_from_another_thread_wakes_the_running_loop():
    """request_revision() (the speech thread's commit) gets a new revision sent at once,
    without waiting for the next window."""
    words, sinks = Words(), Sinks()
    sl = loop(words, sinks)
    sl.queue.put(window(0, []))
    sl.start()
    try:
        deadline = time.monotonic() + 5
        while not sinks.published and time.monotonic() < deadline:
            time.sleep(0.005)
        words.committed = [w("bad", 0.5)]
        t0 = time.monotonic()
        sl.request_revision()
        while len(sinks.published) < 2 and time.monotonic() < deadline:
            time.sleep(0.002)
        took = time.monotonic() - t0
    finally:
        sl.queue.close()
        sl.join(5)
    assert [(m["seq"], m["revision"], m["score"]) for m in sinks.published] == [(0, 0, 0.0), (0, 1, -1.0)]
    assert took < 0.15  # woken, not found by the 0.2 s poll
    assert [(m["seq"], m["revision"]) for m in sinks.recorded] == [(0, 1)]  # closed at the end


def test_queued_windows_are_scored_before_any_revision():
    words, sinks = Words(), Sinks()
    sl = loop(words, sinks)
    sl.handle(window(0, []))
    sl.queue.put(window(1, []))
    words.committed = [w("good", 0.5)]
    assert sl.revise_open() is None  # the next window will read the new words anyway


def test_provisional_words_are_shown_marked_then_replaced_when_they_commit():
    words, sinks = Words(), Sinks()
    words.committed = [w("this", 0.5)]
    words.hypothesis = [w("good", 1.0)]
    sl = loop(words, sinks, provisional=True)
    shown = sl.handle(window(0, words(4.0)))
    assert shown["provisional"] is True and shown["score"] == 1.0  # read the hypothesis at once
    assert shown["words"][-1] == {"w": "good", "start": 1.0, "end": 1.3, "provisional": True}
    assert "provisional" not in shown["words"][0]
    assert sl.final["provisional"] is False and sl.final["score"] == 0.0  # also scored on committed words
    # the hypothesis changes: a provisional revision
    words.hypothesis = [w("bad", 1.0)]
    changed = sl.revise_open()
    assert (changed["revision"], changed["provisional"], changed["score"]) == (1, True, -1.0)
    # it commits: a committed revision, the same words unmarked
    words.committed.append(w("bad", 1.0))
    words.hypothesis = []
    final = sl.revise_open()
    assert (final["revision"], final["provisional"], final["score"]) == (2, False, -1.0)
    assert all("provisional" not in x for x in final["words"])
    sl.close_open()
    assert [(m["revision"], m["provisional"], m["score"]) for m in sinks.recorded] == [(2, False, -1.0)]
    assert [m["revision"] for m in sinks.published] == [0, 1, 2]


def test_a_window_closing_on_provisional_words_is_sent_and_recorded_on_committed_ones():
    """The next window comes before the hypothesis commits: the open window's committed
    message is sent as its last revision and recorded (before it is sent), so every seq
    ends on committed words on the page and in the recording."""
    words, sinks = Words(), Sinks()
    words.hypothesis = [w("good", 1.0)]
    sl = loop(words, sinks, provisional=True)
    sl.handle(window(0, words(4.0)))
    sl.handle(window(1, words(4.5)))
    assert [(m["seq"], m["revision"], m["provisional"]) for m in sinks.published] == [(0, 0, True), (0, 1, False), (1, 0, True)]
    assert sinks.order.index(("record", 0, 1)) < sinks.order.index(("publish", 0, 1))
    assert [(m["seq"], m["revision"], m["words"]) for m in sinks.recorded] == [(0, 1, [])]


def test_the_recording_holds_one_final_row_per_seq_with_committed_words(tmp_path):
    words, sinks = Words(), Sinks()
    rec = SessionRecorder(tmp_path / "s", session_info={"session": "s"}, fsync=False)
    sl = loop(words, sinks, provisional=True, record=lambda msg, win: rec.write_window(msg, words=[]))
    words.hypothesis = [w("good", 1.0)]
    sl.handle(window(0, words(4.0)))
    words.committed, words.hypothesis = [w("good", 1.0)], [w("bad", 1.5)]
    sl.revise_open()
    sl.handle(window(1, words(4.5)))
    words.committed, words.hypothesis = words.committed + [w("bad", 1.5)], []
    sl.revise_open()
    sl.close_open()
    rec.stop()
    rec.join()
    lines = [json.loads(x) for x in (tmp_path / "s" / "scores.jsonl").read_text().splitlines()]
    assert [(x["seq"], x["provisional"]) for x in lines] == [(0, False), (1, False)]
    assert [[y["w"] for y in x["words"]] for x in lines] == [["good"], ["good", "bad"]]
    assert [x["score"] for x in lines] == [1.0, 0.0]
    session = read_session(tmp_path / "s")
    assert [x["seq"] for x in session.windows] == [0, 1]
    assert session.windows == lines
    # the rows are the last message sent for their seq
    last = {}
    for m in sinks.published:
        last[m["seq"]] = m
    assert [last[0], last[1]] == lines


def test_the_reader_keeps_the_last_row_per_seq(tmp_path):
    """A file holding revisions (e.g. written by a tool that appends every message) reads
    as one window per seq, the last row of each, in the place of its first."""
    from realtime.core import protocol

    folder = tmp_path / "s"
    folder.mkdir()
    rows = [protocol.window_message(session="s", seq=q, start=q, end=q + 4, score=sc, presence={}, revision=r)
            for q, r, sc in ((0, 0, 1.0), (1, 0, 0.2), (1, 1, -2.0), (2, 0, 0.5), (1, 2, -1.0))]
    (folder / "scores.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    session = read_session(folder)
    assert [(x["seq"], x["revision"], x["score"]) for x in session.windows] == [(0, 0, 1.0), (1, 2, -1.0), (2, 0, 0.5)]
    assert protocol.csv_text(session.windows).count("\n") == 4  # header + one row per seq


def test_without_revisions_each_window_is_recorded_before_it_is_sent():
    words, sinks = Words(), Sinks()
    sl = loop(words, sinks, revise=False)
    sl.handle(window(0, []))
    words.committed = [w("good", 0.5)]
    sl.request_revision()
    assert sl.revise_open() is None
    assert sinks.order == [("record", 0, 0), ("publish", 0, 0)]
    assert sl.scores.count == 1


# ------------------------------------------------------------------ the options
def test_reproducible_and_fast_runs_refuse_the_levers_and_never_revise():
    for policy in (Policy.REPRODUCIBLE, Policy.FAST):
        assert not PipelineOptions(policy=policy).revises
        assert not PipelineOptions(policy=policy).provisional
        for name in ("rescore_on_commit", "provisional_words"):
            with pytest.raises(ValueError, match=rf"^{name} needs the live policy: {policy.value} runs score each window once"):
                PipelineOptions(policy=policy, **{name: True})
        assert not PipelineOptions(policy=policy, rescore_on_commit=False, provisional_words=False).revises
    live = PipelineOptions(policy=Policy.LIVE)
    assert live.revises
    assert not PipelineOptions(policy=Policy.LIVE, rescore_on_commit=False).revises
    assert PipelineOptions(policy=Policy.LIVE, rescore_on_commit=False, provisional_words=True).revises
    assert PipelineOptions(policy=Policy.LIVE, provisional_words=True).provisional


def test_hcl_live_refuses_provisional_words_outside_the_live_policy(capsys):
    from realtime.app import live as cli
    from realtime.app.console import run_command
    from realtime.app.options import live_parser

    for flag in ("--fast", "--reproducible"):
        assert run_command(cli.live, ["--file", "missing.wav", flag, "--provisional-words", "--no-browser"]) == 2
        err = capsys.readouterr().err
        assert "--provisional-words needs the live policy: leave out --reproducible and --fast" in err
    assert live_parser().parse_args(["--provisional-words"]).provisional_words is True
    assert live_parser().parse_args([]).provisional_words is False
