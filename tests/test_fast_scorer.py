"""The CPU fast path of WindowScorer (a frozen TorchScript graph on the input buffers)
scores exactly what the eager model scores, on windows of every kind."""

from __future__ import annotations

import numpy as np
import pytest

from realtime.pipeline.windowing import Window


def window(rng, *, text: str, audio_steps: int, video_steps: int) -> Window:
    am = np.zeros(8, bool)
    vm = np.zeros(8, bool)
    am[:audio_steps] = True
    vm[:video_steps] = True
    return Window(
        seq=0, start=0.0, end=4.0,
        audio=rng.normal(size=(8, 48)).astype(np.float32), audio_mask=am,
        video=rng.uniform(size=(8, 58)).astype(np.float32), video_mask=vm,
        words=[], text=text, presence={},
    )


CASES = [
    ("i absolutely love this it is wonderful", 8, 8),
    ("this is terrible i hate it", 3, 0),
    ("", 8, 8),  # no words yet
    ("", 0, 0),  # nothing present at all
    ("the bus stops at the corner of the street " * 6, 8, 5),  # longer than max_tokens
    ("ok", 1, 1),
]


@pytest.fixture(scope="module")
def scorers(live_checkpoint):
    import torch

    from realtime.pipeline.scorer import WindowScorer

    torch.set_num_threads(1)
    eager = WindowScorer(checkpoint=live_checkpoint, device="cpu", fast="eager")
    fast = WindowScorer(checkpoint=live_checkpoint, device="cpu", fast="trace")
    eager.warm_up()
    fast.warm_up()
    return eager, fast


def test_traced_scores_equal_the_eager_model(scorers):
    eager, fast = scorers
    assert fast.fast == "trace" and 1 in fast._traced  # the graph is really in use
    assert eager.fast == "eager" and not eager._traced
    rng = np.random.default_rng(0)
    before = fast.buffer_pointers()
    scores = []
    for text, a, v in CASES * 2:  # twice: a graph must not keep anything of the last window
        w = window(rng, text=text, audio_steps=a, video_steps=v)
        e, f = eager.score(w), fast.score(w)
        assert f.score == pytest.approx(e.score, abs=1e-4)
        assert set(f.weights) == set(e.weights)
        for m in e.weights:
            assert f.weights[m] == pytest.approx(e.weights[m], abs=1e-4)
        assert (f.attention is None) == (e.attention is None)
        if e.attention is not None:
            assert np.allclose(f.attention, e.attention, atol=1e-4)
        scores.append(f.score)
    assert len({round(s, 4) for s in scores}) > 2  # the windows really differ
    assert fast.buffer_pointers() == before


def test_traced_model_equals_the_model_itself(scorers, live_checkpoint):
    """Against `model(...)` called directly (not through another scorer)."""
    import torch

    _, fast = scorers
    rng = np.random.default_rng(1)
    w = window(rng, text="what a fantastic film", audio_steps=6, video_steps=4)
    result = fast.score(w)
    with torch.inference_mode():
        direct = fast.model(**fast._inputs(1), details=True)
    assert result.score == pytest.approx(float(direct.score[0]), abs=1e-4)


def test_auto_is_the_graph_on_cpu_and_a_bad_choice_is_refused(live_checkpoint):
    from realtime.pipeline.scorer import WindowScorer

    assert WindowScorer(checkpoint=live_checkpoint, device="cpu").fast == "trace"
    with pytest.raises(ValueError, match="fast"):
        WindowScorer(checkpoint=live_checkpoint, device="cpu", fast="turbo")
