"""The live commit rule (realtime.pipeline.speech): LocalAgreement-2, `settle` (a word
followed by `settle` s of audio in its pass commits on that one pass), and that no
committed word repeats audio already committed. The stream is stepped with a fake
clock and a scripted recogniser (what each pass hears is set per pass horizon)."""

from __future__ import annotations

import numpy as np
import pytest

from hcl.features.speech import Word
from realtime.core.component import Policy
from realtime.pipeline.speech import SpeechOptions, SpeechStream, commit_rule, drop_committed

SR = 16000


def w(text: str, start: float, end: float) -> Word:
    return Word(text, start, end, 0.9)


class Scripted:
    """A recogniser whose hypothesis for a pass ending at H is script[H] (times absolute),
    keeping the words that end inside the pass's audio."""

    def __init__(self, script: dict[float, list[Word]]) -> None:
        self.script = script
        self.calls: list[float] = []

    def transcribe(self, wave: np.ndarray, offset: float = 0.0) -> list[Word]:
        h = round(offset + len(wave) / SR, 2)
        self.calls.append(h)
        words = self.script.get(h, self.script[max(k for k in self.script if k <= h)])
        return [x for x in words if x.end <= h + 1e-9]


def loud(seconds: float) -> np.ndarray:
    """Continuous speech-level audio (no pause anywhere): only the rule decides."""
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def run(script: dict[float, list[Word]], *, settle: float | None, seconds: float = 6.0, period: float = 1.0):
    """Step the stream over `seconds` of speech in 0.1 s steps; [(pass horizon, words committed)]."""
    wave = loud(seconds + 1.0)
    stream = SpeechStream(read=lambda a, b: wave[int(round(a * SR)):int(round(b * SR))], sample_rate=SR,
                          transcribe=Scripted(script).transcribe,
                          options=SpeechOptions(period=period, settle=settle, pause=0.25),
                          policy=Policy.REPRODUCIBLE)
    out = []
    for k in range(1, int(seconds * 10) + 1):
        h = k / 10
        committed = stream.step(h, now=h)
        if committed:
            out.append((h, [x.text for x in committed]))
    return out, stream


# a sentence of 1 s words, heard the same by every pass (each pass cuts at its horizon)
STABLE = {0.0: [w("the", 0.1, 0.4), w("weather", 0.4, 0.9), w("is", 0.9, 1.1), w("lovely", 1.1, 1.8),
                w("today", 1.8, 2.4), w("and", 2.5, 2.8), w("warm", 2.8, 3.4)]}


def test_local_agreement_waits_for_a_second_pass():
    commits, _ = run(STABLE, settle=None)
    # "the weather" (ends by 1.0) is heard by the pass at 1 s and agreed by the one at 2 s
    assert commits[0] == (2.0, ["the", "weather"])


def test_settle_commits_a_word_on_one_pass_once_it_is_settle_seconds_old():
    commits, _ = run(STABLE, settle=0.5)
    first = dict(commits)
    # the pass at 1 s heard "the" (ends 0.4 <= 1 - 0.5): committed on that one pass
    assert first[1.0] == ["the"]
    # every word comes once, in order, and sooner than LocalAgreement's
    assert [x for _, ws in commits for x in ws] == [x.text for x in STABLE[0.0] if x.end <= 6.0]
    la, _ = run(STABLE, settle=None)
    when = lambda cs, word: next(h for h, ws in cs if word in ws)  # noqa: E731
    words = [x.text for x in STABLE[0.0]]
    assert all(when(commits, x) <= when(la, x) for x in words)
    assert sum(when(commits, x) for x in words) < sum(when(la, x) for x in words)
    assert when(commits, "the") < when(la, "the") and when(commits, "today") < when(la, "today")


def test_settle_never_commits_a_word_near_the_buffer_end_that_the_next_pass_corrects():
    # the pass at 2 s hears "lovely" as "love"; the pass at 3 s hears "lovely": the last
    # word sat 0.2 s before the horizon, so it waited and the right word was committed
    script = {0.0: [w("the", 0.1, 0.4), w("weather", 0.4, 0.9), w("is", 0.9, 1.1)],
              2.0: [w("the", 0.1, 0.4), w("weather", 0.4, 0.9), w("is", 0.9, 1.1), w("love", 1.1, 1.8)],
              3.0: [w("the", 0.1, 0.4), w("weather", 0.4, 0.9), w("is", 0.9, 1.1), w("lovely", 1.1, 1.9),
                    w("today", 2.0, 2.6)]}
    commits, _ = run(script, settle=1.0, seconds=5.0)
    words = [x for _, ws in commits for x in ws]
    assert "love" not in words and words[:4] == ["the", "weather", "is", "lovely"]


def test_settle_does_not_commit_past_an_open_word():
    """Speaking order: a settled word after a word that is still open waits too."""
    committed, rest = commit_rule([w("a", 0.0, 0.5), w("b", 0.5, 2.9), w("c", 3.0, 3.2)], previous=[], committed=[],
                                  forced_until=-1.0, settled_until=2.0)
    assert [x.text for x in committed] == ["a"] and [x.text for x in rest] == ["b", "c"]


def test_a_phrase_heard_again_with_drifted_times_is_not_committed_twice():
    """The hcl-annotate duplication of issue 22: a later pass hears committed words again
    with times a little later; they are recognised and dropped."""
    committed = [w("we", 10.0, 10.2), w("order", 10.2, 10.6), w("two", 10.6, 10.9), w("coffees", 10.9, 11.5)]
    again = [w("order", 11.3, 11.7), w("two", 11.7, 12.0), w("coffees", 12.0, 12.5), w("and", 12.6, 12.8),
             w("cake", 12.8, 13.2)]
    assert [x.text for x in drop_committed(again, committed)] == ["and", "cake"]


def test_words_said_again_later_are_new_speech():
    """"try again. fail again. fail better": a head that repeats the committed tail's
    text but lies well after it is new speech, not a repeat."""
    committed = [w("try", 4.9, 5.2), w("again", 5.2, 5.5), w("fail", 6.3, 6.9)]
    new = [w("again", 6.95, 7.6), w("fail", 8.3, 8.5), w("better", 8.5, 8.8)]
    assert [x.text for x in drop_committed(new, committed)] == ["again", "fail", "better"]


@pytest.mark.parametrize("settle", [None, 0.5, 1.0])
def test_no_word_is_committed_twice_over_a_long_phrase(settle):
    """Passes whose word times wobble by up to 0.25 s between passes: every word of the
    sentence is committed exactly once whatever the rule."""
    rng = np.random.default_rng(0)
    base = [("it", 0.1), ("was", 0.4), ("the", 0.7), ("best", 1.0), ("of", 1.5), ("times", 1.8), ("it", 2.4),
            ("was", 2.7), ("the", 3.0), ("worst", 3.3), ("of", 3.8), ("times", 4.1)]
    script = {}
    for k in range(1, 7):
        jitter = rng.uniform(-0.25, 0.25)
        script[float(k)] = [w(t, max(0.0, s + jitter), s + 0.3 + jitter) for t, s in base]
    script[0.0] = script[1.0]
    commits, stream = run(script, settle=settle, seconds=6.0)
    stream.finish(6.0, 6.0)
    words = [x.text for x in stream.transcript.all_words()]
    assert words == [t for t, _ in base]


def test_options_check_the_engine_and_settle():
    assert SpeechOptions(engine="moonshine").engine == "moonshine"
    with pytest.raises(ValueError, match="speech engine"):
        SpeechOptions(engine="vosk")
    with pytest.raises(ValueError, match="settle"):
        SpeechOptions(settle=0.0)
    with pytest.raises(ValueError, match="settle"):
        SpeechOptions(settle=9.0, context=8.0)
