"""The scorer's replay logic (CUDA graphs on a GPU, traced graphs on the CPU), checked on
the CPU: several batch sizes share the model and its one K-means workspace, and every
batch size must keep scoring like the eager model; a capture that fails falls back to
eager scoring.

CUDA graphs themselves need a GPU; here `torch.cuda`'s stream / graph calls are replaced
by fakes that behave like a graph: capture records the forward pass on the scorer's own
input buffers, replay runs it again on whatever those buffers hold *now* and writes the
results into the tensors returned at capture (as the real graph writes into its memory).
"""

from __future__ import annotations

import contextlib
import gc
import weakref

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from hcl.checkpoint import save_checkpoint
    from hcl.config import ModelConfig
    from hcl.features.config import FeatureSettings
    from hcl.model import HCL

    torch.manual_seed(0)
    settings = FeatureSettings()
    model = HCL(config=ModelConfig(**settings.model_dims())).eval()
    return save_checkpoint(tmp_path_factory.mktemp("graphs") / "model.pt", model, features=settings)


def make_windows(features, n: int, seed: int):
    from realtime.pipeline.windowing import Window

    rng = np.random.default_rng(seed)
    texts = ["what a great film", "i did not like it at all", "it was fine i guess", "", "terrible plot but good acting"]
    out = []
    for i in range(n):
        a = rng.normal(size=(features.window_steps, features.audio.dim)).astype(np.float32)
        v = rng.random(size=(features.window_steps, features.face.dim)).astype(np.float32)
        am = rng.random(features.window_steps) > 0.2
        vm = rng.random(features.window_steps) > 0.3
        text = texts[(seed + i) % len(texts)]
        out.append(Window(i, 0.0, 4.0, a, am, v * vm[:, None], vm, [], text, {}))
    return out


@pytest.fixture(scope="module")
def reference(checkpoint):
    """Eager, one window at a time: score and COWA weights of each window."""
    from realtime.pipeline.scorer import WindowScorer

    torch.set_num_threads(1)
    scorer = WindowScorer(checkpoint=checkpoint, device="cpu", fast="eager", cuda_graphs=False)

    def score(window):
        r = scorer.score(window)
        return r.score, r.weights

    return scorer, score


SCHEDULE = [1, 2, 1, 3, 2, 1]  # batch sizes in the order the streams come and go


def check_schedule(scorer, reference_score, seed: int, schedule=SCHEDULE) -> None:
    for step, n in enumerate(schedule):
        windows = make_windows(scorer.features, n, seed + step)
        results = scorer.score_many(windows)
        for w, r in zip(windows, results):
            want_score, want_weights = reference_score(w)
            assert r.score == pytest.approx(want_score, abs=1e-4), (step, n)
            for m in want_weights:
                np.testing.assert_allclose(r.weights[m], want_weights[m], atol=1e-4)


@pytest.mark.slow  # tracing and freezing takes seconds per batch size
def test_traced_graphs_at_several_batch_sizes_score_like_eager(checkpoint, reference):
    from realtime.pipeline.scorer import WindowScorer

    scorer = WindowScorer(checkpoint=checkpoint, device="cpu", max_streams=2, fast="trace")
    check_schedule(scorer, reference[1], seed=10, schedule=[1, 2, 1, 2])
    assert scorer.fast == "trace"  # the traced path really ran


def test_a_trace_that_fails_falls_back_to_eager(checkpoint, reference, monkeypatch, caplog):
    from realtime.pipeline.scorer import WindowScorer

    def broken_trace(*args, **kwargs):
        raise RuntimeError("this op cannot be traced")

    monkeypatch.setattr(torch.jit, "trace", broken_trace)
    scorer = WindowScorer(checkpoint=checkpoint, device="cpu", max_streams=3, fast="trace")
    with caplog.at_level("WARNING"):
        check_schedule(scorer, reference[1], seed=20)
    assert scorer.fast == "eager" and "scoring eagerly" in caplog.text


# ------------------------------------------------------------------ fake CUDA graphs
class FakeGraphs:
    """Stands in for torch.cuda's stream and graph API (see the module docstring)."""

    def __init__(self, model, *, fail: bool = False) -> None:
        self.model = model
        self.fail = fail
        self.capturing = None
        self.captures = 0
        self.workspace_refs: dict[int, list[weakref.ref]] = {}
        real_forward = model.forward

        def forward(*args, **kwargs):
            out = real_forward(*args, **kwargs)
            if self.capturing is not None:
                self.capturing.recorded = (real_forward, args, kwargs, out)
                ws = model.cowa.workspace
                batch = args[0].shape[0] if args else kwargs["text"].shape[0]
                self.workspace_refs[batch] = [weakref.ref(t) for t in ws.buffers().values()]
            return out

        model.forward = forward
        fakes = self

        class Stream:
            def wait_stream(self, other) -> None:
                pass

        class Graph:
            def __init__(self) -> None:
                self.recorded = None

            def replay(self) -> None:
                fwd, args, kwargs, out = self.recorded
                new = fwd(*args, **kwargs)
                out.score.copy_(new.score)
                for m, w in out.weights.items():
                    w.copy_(new.weights[m])
                if out.attention is not None:
                    out.attention.copy_(new.attention)

        @contextlib.contextmanager
        def graph(g):
            if fakes.fail:
                raise RuntimeError("operation not permitted when stream is capturing")
            fakes.capturing = g
            try:
                yield
            finally:
                fakes.capturing = None
                fakes.captures += 1

        self.Stream, self.Graph, self.graph = Stream, Graph, graph

    def install(self, monkeypatch) -> None:
        monkeypatch.setattr(torch.cuda, "Stream", self.Stream)
        monkeypatch.setattr(torch.cuda, "current_stream", lambda *a: self.Stream())
        monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
        monkeypatch.setattr(torch.cuda, "CUDAGraph", self.Graph)
        monkeypatch.setattr(torch.cuda, "graph", self.graph)
        monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: None)


def graph_scorer(checkpoint, monkeypatch, *, fail: bool = False):
    from realtime.pipeline.scorer import WindowScorer

    scorer = WindowScorer(checkpoint=checkpoint, device="cpu", max_streams=3, fast="eager")
    fakes = FakeGraphs(scorer.model, fail=fail)
    fakes.install(monkeypatch)
    scorer.use_graphs = True  # as on a GPU
    return scorer, fakes


def test_graph_replay_at_several_batch_sizes_scores_like_eager(checkpoint, reference, monkeypatch):
    scorer, fakes = graph_scorer(checkpoint, monkeypatch)
    pointers = scorer.buffer_pointers()
    check_schedule(scorer, reference[1], seed=30)
    assert fakes.captures == 3  # one capture per batch size, then replays
    assert scorer.use_graphs and scorer.buffer_pointers() == pointers  # replays read the same input memory


def test_a_capture_that_fails_falls_back_to_eager(checkpoint, reference, monkeypatch, caplog):
    scorer, fakes = graph_scorer(checkpoint, monkeypatch, fail=True)
    with caplog.at_level("WARNING"):
        check_schedule(scorer, reference[1], seed=40)
    assert not scorer.use_graphs and "capture failed" in caplog.text


def test_buffers_of_a_captured_graph_stay_allocated(checkpoint, monkeypatch):
    scorer, fakes = graph_scorer(checkpoint, monkeypatch)
    scorer.score_many(make_windows(scorer.features, 1, 50))
    scorer.score_many(make_windows(scorer.features, 2, 51))
    gc.collect()
    assert set(fakes.workspace_refs) == {1, 2}
    dead = [r for r in fakes.workspace_refs[1] if r() is None]
    assert not dead, f"{len(dead)} K-means buffers the batch-size-1 graph writes into were freed"
