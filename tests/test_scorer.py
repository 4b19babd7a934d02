"""WindowScorer: buffers allocated once, batched scoring equals one-by-one, details for the dashboard."""

from __future__ import annotations

import numpy as np
import pytest

from realtime.pipeline.windowing import Window


def make_window(rng, seq: int, *, text: str = "i really like this", audio: bool = True, video: bool = True, steps: int = 8):
    a = rng.normal(size=(8, 48)).astype(np.float32)
    v = rng.uniform(size=(8, 58)).astype(np.float32)
    am = np.zeros(8, bool)
    vm = np.zeros(8, bool)
    am[:steps] = audio
    vm[:steps] = video
    return Window(
        seq=seq, start=0.0, end=4.0, audio=a, audio_mask=am, video=v, video_mask=vm, words=[], text=text,
        presence={"text": bool(text), "audio": audio, "video": video},
    )


def test_scores_without_allocating_new_input_buffers(live_scorer):
    rng = np.random.default_rng(0)
    before = live_scorer.buffer_pointers()
    texts = ["i love it", "", "this is the worst thing ever", "hmm"]
    for i in range(6):
        r = live_scorer.score(make_window(rng, i, text=texts[i % 4], audio=i % 2 == 0, video=i % 3 != 0, steps=1 + i))
        assert -3.0 <= r.score <= 3.0 and np.isfinite(r.score)
    assert live_scorer.buffer_pointers() == before
    assert all(b.shape[0] == live_scorer.max_streams for b in live_scorer.buffers.values())


def test_details_for_the_dashboard(live_scorer):
    r = live_scorer.score(make_window(np.random.default_rng(1), 0))
    k = live_scorer.config.clusters
    assert set(r.weights) == {"text", "audio", "video"}
    assert all(len(w) == k and abs(sum(w) - 1) < 1e-3 for w in r.weights.values())
    assert r.attention is not None and len(r.attention) == len(r.attention[0])
    assert r.model_ms > 0


def test_all_modalities_absent_still_scores(live_scorer):
    r = live_scorer.score(make_window(np.random.default_rng(2), 0, text="", audio=False, video=False))
    assert np.isfinite(r.score)


def test_same_window_same_score_and_buffers_are_reset_between_windows(live_scorer):
    rng = np.random.default_rng(3)
    long = make_window(rng, 0, text="a long sentence " * 20)
    short = make_window(rng, 1, text="ok", steps=2)
    first = live_scorer.score(short).score
    live_scorer.score(long)
    assert live_scorer.score(short).score == pytest.approx(first, abs=1e-5)


def test_score_many_matches_one_by_one(live_checkpoint):
    from realtime.pipeline.scorer import WindowScorer

    scorer = WindowScorer(checkpoint=live_checkpoint, device="cpu", max_streams=3)
    rng = np.random.default_rng(4)
    windows = [make_window(rng, i, text=t, steps=s) for i, (t, s) in enumerate([("great", 8), ("", 3), ("awful day", 5)])]
    before = scorer.buffer_pointers()
    together = [r.score for r in scorer.score_many(windows)]
    alone = [scorer.score(w).score for w in windows]
    assert together == pytest.approx(alone, abs=1e-4)
    assert scorer.buffer_pointers() == before
    with pytest.raises(ValueError, match="max_streams"):
        scorer.score_many(windows + windows)


def test_model_info_and_settings_come_from_the_checkpoint(live_scorer):
    assert live_scorer.model_info["name"]
    assert live_scorer.lengths == {
        "text": live_scorer.features.text.max_tokens,
        "audio": live_scorer.features.window_steps,
        "video": live_scorer.features.window_steps,
    }


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    from realtime.pipeline.scorer import WindowScorer

    with pytest.raises(FileNotFoundError, match="not found"):
        WindowScorer(checkpoint=tmp_path / "nope.pt", device="cpu")


@pytest.mark.skipif("not __import__('torch').cuda.is_available()")
def test_cuda_graph_replay_matches_eager(live_checkpoint):
    from realtime.pipeline.scorer import WindowScorer

    rng = np.random.default_rng(5)
    windows = [make_window(rng, i, text=t) for i, t in enumerate(["good", "bad news", ""])]
    eager = WindowScorer(checkpoint=live_checkpoint, device="cuda", cuda_graphs=False)
    graph = WindowScorer(checkpoint=live_checkpoint, device="cuda", cuda_graphs=True)
    before = graph.buffer_pointers()
    for w in windows:
        assert graph.score(w).score == pytest.approx(eager.score(w).score, abs=1e-3)
    assert graph.use_graphs and graph.buffer_pointers() == before
