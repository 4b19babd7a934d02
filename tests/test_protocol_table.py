"""The wire protocol against hand-written expectations (never against itself).

Scores map to classes the way Acc-7 maps them: clip to [-3, 3], round half to
even (numpy's `np.round`, Python's `round`). Each row below was worked out by hand.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from realtime.core import protocol

# score -> (class7, label, polarity)
TABLE = [
    (-9.0, -3, "strongly negative", "negative"),
    (-3.0, -3, "strongly negative", "negative"),
    (-2.6, -3, "strongly negative", "negative"),
    (-2.5, -2, "negative", "negative"),  # half to even
    (-2.4, -2, "negative", "negative"),
    (-1.5, -2, "negative", "negative"),  # half to even
    (-1.49, -1, "weakly negative", "negative"),
    (-0.7, -1, "weakly negative", "negative"),
    (-0.51, -1, "weakly negative", "negative"),
    (-0.5, 0, "neutral", "neutral"),  # half to even
    (-0.2, 0, "neutral", "neutral"),
    (0.0, 0, "neutral", "neutral"),
    (0.3, 0, "neutral", "neutral"),
    (0.5, 0, "neutral", "neutral"),  # half to even
    (0.51, 1, "weakly positive", "positive"),
    (0.7, 1, "weakly positive", "positive"),  # truncation would give 0
    (1.2, 1, "weakly positive", "positive"),
    (1.5, 2, "positive", "positive"),  # half to even
    (1.99, 2, "positive", "positive"),
    (2.5, 2, "positive", "positive"),  # half to even
    (2.51, 3, "strongly positive", "positive"),
    (3.0, 3, "strongly positive", "positive"),
    (4.2, 3, "strongly positive", "positive"),
]


@pytest.mark.parametrize("score,klass,label,polarity", TABLE)
def test_class_label_and_polarity_by_hand(score, klass, label, polarity):
    assert protocol.class7(score) == klass and type(protocol.class7(score)) is int
    assert protocol.CLASS7_LABELS[klass] == label
    assert protocol.polarity(score) == polarity
    msg = protocol.window_message(session="s", seq=0, start=0, end=4, score=score, presence={})
    assert (msg["class7"], msg["label"], msg["polarity"]) == (klass, label, polarity)


def test_class7_agrees_with_acc7_rounding():
    """The dashboard's class and the Acc-7 metric put every score in the same class."""
    scores = np.round(np.linspace(-4, 4, 801), 2)
    expected = np.round(np.clip(scores, -3, 3)).astype(int)  # what hcl.metrics.multiclass_acc does
    assert [protocol.class7(float(s)) for s in scores] == expected.tolist()


def test_non_finite_scores_are_neutral():
    for bad in (math.nan, math.inf, -math.inf):
        assert protocol.class7(bad) == 0 and protocol.polarity(bad) == "neutral"


def test_labels_literal():
    assert protocol.CLASS7_LABELS == {
        -3: "strongly negative",
        -2: "negative",
        -1: "weakly negative",
        0: "neutral",
        1: "weakly positive",
        2: "positive",
        3: "strongly positive",
    }


WINDOW_KEYS = {
    "type", "v", "session", "seq", "revision", "start", "end", "score", "class7", "label", "polarity",
    "presence", "weights", "attention", "words", "provisional", "latency_ms", "dropped", "readouts",
}


def test_window_message_keys_and_values_literal():
    assert protocol.WINDOW_KEYS == WINDOW_KEYS
    msg = protocol.window_message(
        session="abc",
        seq=np.int64(7),
        start=1.23456,
        end=5.23449,
        score=-1.234567,
        presence={"text": 1, "audio": 0, "extra": True},
        weights={"text": [0.123456, 0.5], "audio": np.array([0.25, 0.75])},
        attention=[[0.111111, 0.888889], [0.5, 0.5]],
        words=[{"w": "good", "start": 1.00049, "end": 1.50049, "probability": 0.9}],
        latency_ms={"capture": 1.23456, "scoring": 7},
        dropped=np.int32(2),
    )
    assert set(msg) == WINDOW_KEYS
    assert msg == {
        "type": "window",
        "v": 3,
        "session": "abc",
        "seq": 7,
        "revision": 0,
        "start": 1.235,
        "end": 5.234,
        "score": -1.2346,
        "class7": -1,
        "label": "weakly negative",
        "polarity": "negative",
        "presence": {"text": True, "audio": False, "video": False},
        "weights": {"text": [0.1235, 0.5], "audio": [0.25, 0.75]},
        "attention": [[0.1111, 0.8889], [0.5, 0.5]],
        "words": [{"w": "good", "start": 1.0, "end": 1.5}],
        "provisional": False,
        "latency_ms": {"capture": 1.23, "scoring": 7.0},
        "dropped": 2,
        "readouts": None,
    }
    assert type(msg["seq"]) is int and type(msg["dropped"]) is int
    assert all(type(v) is bool for v in msg["presence"].values())
    json.dumps(msg, allow_nan=False)  # plain JSON types only


def test_window_message_defaults():
    msg = protocol.window_message(session="s", seq=0, start=0, end=4, score=0.2, presence={"video": True})
    assert msg["presence"] == {"text": False, "audio": False, "video": True}
    assert msg["weights"] == {} and msg["attention"] is None and msg["words"] == []
    assert msg["latency_ms"] == {} and msg["dropped"] == 0
    assert msg["revision"] == 0 and msg["provisional"] is False


def test_revision_and_provisional_words_literal():
    """Version 2: a revision number, and provisional words marked one by one (only those);
    the message is provisional exactly when one of its words is."""
    words = [{"w": "not", "start": 0.1, "end": 0.4, "provisional": False},
             {"w": "bad", "start": 0.5, "end": 0.90049, "provisional": True, "p": 0.5}]
    msg = protocol.window_message(session="s", seq=3, start=0, end=4, score=1.0, presence={}, words=words,
                                  revision=np.int64(2))
    assert msg["revision"] == 2 and type(msg["revision"]) is int
    assert msg["words"] == [{"w": "not", "start": 0.1, "end": 0.4}, {"w": "bad", "start": 0.5, "end": 0.9, "provisional": True}]
    assert msg["provisional"] is True
    committed = protocol.window_message(session="s", seq=3, start=0, end=4, score=1.0, presence={}, words=words[:1],
                                        revision=3)
    assert committed["provisional"] is False and committed["words"] == [{"w": "not", "start": 0.1, "end": 0.4}]


def test_final_windows_keeps_the_last_message_per_seq():
    a0, b0, a1, a2 = {"seq": 0, "revision": 0}, {"seq": 1, "revision": 0}, {"seq": 0, "revision": 1}, {"seq": 0, "revision": 2}
    assert protocol.final_windows([a0, b0, a1, a2]) == [a2, b0]  # in the place of the first, the last wins
    assert protocol.final_windows([]) == []
    assert protocol.final_windows([{"x": 1}, {"x": 2}]) == [{"x": 1}, {"x": 2}]  # no seq: nothing merged


def test_other_messages_literal():
    hello = protocol.hello_message(session="s1", mode="live", model={"name": "m", "version": "1"},
                                   step_seconds=0.5, window_steps=8, clusters=8)
    assert hello == {
        "type": "hello", "v": 3, "session": "s1", "mode": "live", "model": {"name": "m", "version": "1"},
        "settings": {"step_seconds": 0.5, "window_steps": 8}, "modalities": ["text", "audio", "video"], "clusters": 8,
    }
    assert protocol.error_message("bad") == {"type": "error", "v": 3, "message": "bad"}
    assert protocol.stats_message({"uptime": 3.0, "clients": 1}) == {"type": "stats", "v": 3, "uptime": 3.0, "clients": 1}
    assert protocol.session_message(session="s1", windows=({"seq": 0},), words=({"w": "a"},)) == {
        "type": "session", "v": 3, "session": "s1", "windows": [{"seq": 0}], "words": [{"w": "a"}]}
    assert protocol.session_message(session="s1", windows=[])["words"] == []
    assert protocol.pong_message(12.34567) == {"type": "pong", "v": 3, "t": 12.346}
    assert protocol.PROTOCOL_VERSION == 3 and protocol.MAX_CLIENT_MESSAGE == 4096


def test_status_messages():
    assert protocol.STATUSES == ("loading", "running", "finished")
    assert protocol.status_message("running") == {"type": "status", "v": 3, "state": "running", "detail": ""}
    assert protocol.status_message("loading", 3) == {"type": "status", "v": 3, "state": "loading", "detail": "3"}
    with pytest.raises(ValueError, match=r"^status must be one of \('loading', 'running', 'finished'\), not 'paused'$"):
        protocol.status_message("paused")


def test_csv_export_by_hand():
    assert protocol.CSV_COLUMNS == (
        "session", "seq", "start", "end", "text_start", "text_end", "score", "class7", "label", "polarity",
        "text", "audio", "video", "words", *protocol.READOUT_COLUMNS,
    )
    blank = [""] * len(protocol.READOUT_COLUMNS)  # no readouts: empty cells (tests/test_readouts_live.py fills them)
    words = [{"w": "not", "start": 0.8, "end": 1.1}, {"w": "bad", "start": 0.2, "end": 0.5},
             {"w": "at all", "start": 1.2, "end": 1.9}]
    w1 = protocol.window_message(session="s1", seq=3, start=1.5, end=5.5, score=0.7,
                                 presence={"text": True, "video": True}, words=words)
    w2 = protocol.window_message(session="s1", seq=4, start=2.0, end=6.0, score=-2.6, presence={})
    assert protocol.text_span(w1) == (0.2, 1.9)  # earliest start, latest end, whatever the order
    assert protocol.text_span(w2) is None and protocol.text_span({}) is None
    assert protocol.csv_row(w1) == ["s1", 3, 1.5, 5.5, 0.2, 1.9, 0.7, 1, "weakly positive", "positive", 1, 0, 1,
                                    "not bad at all", *blank]
    assert protocol.csv_row(w2)[4:6] == ["", ""] and protocol.csv_row(w2)[10:] == [0, 0, 0, "", *blank]
    assert protocol.csv_row({"presence": {"audio": True}})[10:13] == [0, 1, 0]
    assert protocol.csv_row({}) == ["", "", "", "", "", "", "", "", "", "", 0, 0, 0, "", *blank]
    commas = "," * len(protocol.READOUT_COLUMNS)
    assert protocol.csv_text([w1, w2]) == (
        "session,seq,start,end,text_start,text_end,score,class7,label,polarity,text,audio,video,words,"
        + ",".join(protocol.READOUT_COLUMNS) + "\n"
        "s1,3,1.5,5.5,0.2,1.9,0.7,1,weakly positive,positive,1,0,1,not bad at all" + commas + "\n"
        "s1,4,2.0,6.0,,,-2.6,-3,strongly negative,negative,0,0,0," + commas + "\n"
    )
    assert protocol.csv_text([]) == ",".join(protocol.CSV_COLUMNS) + "\n"
    quoted = protocol.window_message(session="a,b", seq=0, start=0, end=4, score=0, presence={},
                                     words=[{"w": 'say "hi"', "start": 0, "end": 1}])
    assert protocol.csv_text([quoted]).splitlines()[1] == '"a,b",0,0.0,4.0,0.0,1.0,0.0,0,neutral,neutral,0,0,0,"say ""hi"""' + commas
