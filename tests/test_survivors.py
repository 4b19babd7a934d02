"""Tests for breakages that passed the whole quick suite (issue 25's mutation probe): each
test below fails when its breakage is applied, and says which one.

- LocalAgreement counting every agreeing position instead of the shared prefix;
- the governor's skipped-pass threshold not scaled by the number of sessions;
- max-sessions ignoring sessions admitted but not yet registered.

(scores.jsonl's fsync per line and the JPEG height check are in test_reliability_round3.py.)"""

from __future__ import annotations

import threading
import time

import pytest

from realtime.pipeline.speech import TimedWord, agreed_prefix, commit_rule


def W(text: str, start: float, end: float) -> TimedWord:
    return TimedWord(text, start, end, 0.9, end, end)


def words(text: str, start: float = 0.0, step: float = 0.3) -> list[TimedWord]:
    return [W(w, start + i * step, start + (i + 1) * step) for i, w in enumerate(text.split())]


# ---------------------------------------------------------------- LocalAgreement
@pytest.mark.parametrize("previous, current, agreed", [
    ("i love this", "i loathe this film", "i"),  # agreement at 0 and 2: only 0 is a shared prefix
    ("we did not like it", "we did like it a lot", "we did"),
    ("good movie", "bad movie", ""),  # nothing shared at the start: nothing agreed
    ("i am absolutely", "i am absolutely loving this", "i am absolutely"),
])
def test_local_agreement_commits_only_the_shared_prefix(previous, current, agreed):
    """Breakage caught: counting every position where the two passes agree ("i" and "this")
    would commit "i loathe": a word the previous pass never said, and a wrong sentiment."""
    prev, cur = words(previous), words(current)
    n = len(agreed.split())
    assert agreed_prefix(prev, cur) == n
    chosen, rest = commit_rule(cur, previous=prev, committed=[], forced_until=-1)
    assert [w.text for w in chosen] == agreed.split()
    assert [w.text for w in rest] == current.split()[n:]  # the rest waits for the next pass


# ---------------------------------------------------------------- the governor
def test_one_skipped_pass_among_four_sessions_neither_thins_nor_refuses():
    """Breakage caught: a skipped-pass threshold not scaled by the number of sessions
    (with 4 sessions one skipped pass then thins everyone and refuses a fifth). The same
    evidence from one session does thin, and four skipped passes among four do."""
    from realtime.sessions.governor import Behind, GovernorConfig, LoadGovernor

    cfg = GovernorConfig(max_skipped=1.0, window=4.0, settle=0.0, grace=0.5)
    t0 = time.monotonic() + 1000.0  # fake clock, well after the governor was made

    def run(sessions: int, skipped_per_tick: list[int]) -> LoadGovernor:
        gov = LoadGovernor(None, cfg)
        for i, skipped in enumerate(skipped_per_tick):
            gov.decide(0.5, t0 + i, Behind(lateness=0.0, skipped=skipped, dropped=0, sessions=sessions))
        return gov

    four = run(4, [0, 1, 0])
    assert four.level == 0, four.state()
    assert four.refusal(4, now=t0 + 2) is None  # busy 0.5 x 5/4 = 0.63 < high: a fifth fits
    assert run(1, [0, 1, 0]).level == 1  # one session skipping a pass is behind
    assert run(4, [0, 2, 2]).level == 1  # four skipped passes among four sessions are too
    assert "fall behind" in run(4, [0, 2, 2]).refusal(4, now=t0 + 2)


# ---------------------------------------------------------------- admission
class HeldChannels:
    """A ChannelOpener whose open_channel waits for `release`: holds a session between its
    admission and its registration, as a slow session set-up does."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.keys: list[str] = []

    def open_channel(self, key, hello):
        from types import SimpleNamespace

        self.keys.append(key)
        self.entered.set()
        assert self.release.wait(60)
        return SimpleNamespace(publish=lambda msg: None, set_status=lambda *a, **k: None,
                               attach_recording=lambda d: None, key=key)

    def close_channel(self, key) -> None:
        pass


def test_max_sessions_counts_sessions_admitted_but_not_yet_registered(live_scorer):
    """Breakage caught: max-sessions counting registered sessions only (browsers arriving
    together each pass admission while the first is still being set up, and the server
    takes more than --max-sessions)."""
    from realtime.core.component import Policy
    from realtime.pipeline.live import PipelineOptions
    from realtime.sessions.hub import AdmissionRefused, HubConfig, SessionHub
    from realtime.sources.browser import BrowserSource

    hub = SessionHub(scorer=live_scorer, config=HubConfig(max_sessions=1, record_dir=None),
                     options=PipelineOptions(policy=Policy.LIVE, transcribe=False))
    held = HeldChannels()
    opened: list = []
    first = threading.Thread(target=lambda: opened.append(hub.open(BrowserSource(), kind="browser", channels=held)))
    first.start()
    try:
        assert held.entered.wait(30), "the first session never reached its set-up"
        assert not hub.sessions()  # admitted, not registered yet
        with pytest.raises(AdmissionRefused, match="the server is full: 1 sessions"):
            hub.open(BrowserSource(), kind="browser", channels=held)
        assert held.keys and len(held.keys) == 1  # the second never got as far as a channel
    finally:
        held.release.set()
        first.join(30)
    assert len(opened) == 1 and [s.id for s in hub.sessions()] == [opened[0].id]
    with pytest.raises(AdmissionRefused, match="the server is full"):
        hub.check_admission()
    hub.end(opened[0].id, wait=False)
    hub.check_admission()  # its slot is free again
    hub.stop()
