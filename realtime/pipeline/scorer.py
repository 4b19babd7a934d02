"""`WindowScorer`: one checkpoint, input buffers allocated once, windows scored in place.

Buffers have fixed shapes (max_streams, L_m, D_m) with L_text = the checkpoint's
text max_tokens and L_audio = L_video = window_steps; every window is copied into
them (no new input tensors per window) and scored under `torch.inference_mode()`.
On CUDA the forward pass is captured once per batch size as a CUDA graph and
replayed. On CPU (`fast="trace"`, the default there) the forward pass is traced
once per batch size into a frozen TorchScript graph on those buffers: at batch 1
the eager model's cost is per-operation Python and dispatch overhead, which the
graph removes; a test holds its scores equal to the eager model's within 1e-4.
Several streams share one scorer through `score_many`.
"""

from __future__ import annotations

import collections
import logging
import pathlib
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from hcl.checkpoint import default_live_checkpoint, load_checkpoint
from hcl.features.config import MODALITIES
from hcl.features.text import TextEncoder
from realtime.core.component import RecentStats

log = logging.getLogger(__name__)


@dataclass
class ScoreResult:
    score: float
    weights: dict[str, list[float]]  # COWA group weights per modality (K each)
    attention: list[list[float]] | None  # (T, T), averaged over heads
    text_ms: float = 0.0  # text encoding of this window
    model_ms: float = 0.0  # the model's share of the (batched) forward pass
    meta: dict[str, Any] = field(default_factory=dict)


class WindowScorer:
    """Scores `Window`s (see `realtime.pipeline.windowing`) with a checkpoint.

    checkpoint: path (default `hcl.checkpoint.default_live_checkpoint()`);
    device: "cpu", "cuda" or "auto"; max_streams: batch buffer rows;
    cuda_graphs: replay the step as a CUDA graph on CUDA;
    text_runtime: what runs the text encoder ("auto", "onnxruntime", "torch"; see
    `hcl.features.text`).
    """

    def __init__(
        self,
        *,
        checkpoint: str | pathlib.Path | None = None,
        device: str = "auto",
        max_streams: int = 1,
        cuda_graphs: bool = True,
        fast: str = "auto",
        text_cache: int = 32,
        text_runtime: str = "auto",
        loaded=None,
    ) -> None:
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if loaded is None:
            path = pathlib.Path(checkpoint) if checkpoint is not None else default_live_checkpoint()
            loaded = load_checkpoint(path, map_location=self.device)
        self.checkpoint = loaded
        self.path = getattr(loaded, "path", None)
        self.model = loaded.model.to(self.device).eval()
        self.features = loaded.features
        self.config = loaded.model_config
        # "auto": onnxruntime on CPU (same features within 1e-5, about 1.5x faster on one thread)
        self.text_encoder = TextEncoder(config=self.features.text, device="cpu", tuned_state=getattr(loaded, "text_top", None),
                                        runtime=text_runtime)
        self.max_streams = int(max_streams)
        lengths = {"text": self.features.text.max_tokens, "audio": self.features.window_steps, "video": self.features.window_steps}
        dims = {"text": self.config.text_dim, "audio": self.config.audio_dim, "video": self.config.video_dim}
        if max(lengths.values()) > self.config.max_len:
            raise ValueError(f"window lengths {lengths} exceed the model's max_len {self.config.max_len}")
        self.lengths = lengths
        self.buffers = {
            m: torch.zeros(self.max_streams, lengths[m], dims[m], dtype=torch.float32, device=self.device) for m in MODALITIES
        }
        self.masks = {m: torch.zeros(self.max_streams, lengths[m], dtype=torch.bool, device=self.device) for m in MODALITIES}
        self._pinned = None
        if self.device.type == "cuda":
            self._pinned = {
                "data": {m: self.buffers[m].cpu().pin_memory() for m in MODALITIES},
                "mask": {m: self.masks[m].cpu().pin_memory() for m in MODALITIES},
            }
        self.use_graphs = bool(cuda_graphs) and self.device.type == "cuda" and torch.cuda.is_available()
        self._graphs: dict[int, tuple[Any, Any]] = {}
        if fast not in ("auto", "eager", "trace"):
            raise ValueError(f"fast must be 'auto', 'eager' or 'trace', got {fast!r}")
        # CPU: a frozen TorchScript graph per batch size (CUDA keeps its CUDA graphs)
        self.fast = "trace" if fast == "auto" and self.device.type == "cpu" else ("eager" if fast == "auto" else fast)
        self._traced: dict[int, Any] = {}
        self._text_cache: collections.OrderedDict[str, np.ndarray] = collections.OrderedDict()
        self._text_cache_size = text_cache
        self._text_lock = threading.RLock()
        self.text_hits = 0
        self.text_misses = 0
        self.step_ms = RecentStats()
        self._warm = False

    # ------------------------------------------------------------------ info
    @property
    def model_info(self) -> dict[str, Any]:
        meta = getattr(self.checkpoint, "meta", {}) or {}
        name = meta.get("name") or (self.path.parent.name if self.path else "hcl")
        return {
            "name": str(name),
            "version": str(meta.get("version", meta.get("created", ""))),
            # modalities the model scores; the dashboard marks the others "not scored"
            "inputs": list(self.config.inputs),
        }

    def warm_up(self) -> None:
        """Load the text encoder and run one window (first calls are slow). Idempotent."""
        if self._warm:
            return
        self.encode_text("hello")
        for m in MODALITIES:
            self.masks[m][:, 0] = True
        self._forward(1)
        for m in MODALITIES:
            self.masks[m].zero_()
        self._warm = True

    # ------------------------------------------------------------------ text
    def encode_text(self, text: str) -> np.ndarray:
        """(L, D_t) token features of a window's text, cached by text. Thread-safe: the
        pipeline may encode the next window's text ahead of time from another thread
        (one encoding at a time; a caller wanting the text being encoded waits for it)."""
        with self._text_lock:
            cached = self._text_cache.get(text)
            if cached is not None:
                self._text_cache.move_to_end(text)
                self.text_hits += 1
                return cached
            self.text_misses += 1
            (feats,) = self.text_encoder.encode([text])
            self._text_cache[text] = feats
            while len(self._text_cache) > self._text_cache_size:
                self._text_cache.popitem(last=False)
            return feats

    # ------------------------------------------------------------------ scoring
    def _fill(self, row: int, window, text_feats: np.ndarray) -> None:
        target = self._pinned if self._pinned is not None else {"data": self.buffers, "mask": self.masks}
        arrays = {
            "text": (text_feats, np.ones(len(text_feats), bool)),
            "audio": (window.audio, window.audio_mask),
            "video": (window.video, window.video_mask),
        }
        for m, (x, mask) in arrays.items():
            buf, mbuf = target["data"][m][row], target["mask"][m][row]
            n = min(len(x), self.lengths[m])
            buf.zero_()
            mbuf.zero_()
            if n:
                buf[:n].copy_(torch.from_numpy(np.ascontiguousarray(x[:n], dtype=np.float32)))
                mbuf[:n].copy_(torch.from_numpy(np.ascontiguousarray(mask[:n], dtype=bool)))
            buf.mul_(mbuf.unsqueeze(-1))  # masked rows are zero, as `collate` makes them

    def _upload(self, n: int) -> None:
        if self._pinned is None:
            return
        for m in MODALITIES:
            self.buffers[m][:n].copy_(self._pinned["data"][m][:n], non_blocking=True)
            self.masks[m][:n].copy_(self._pinned["mask"][m][:n], non_blocking=True)

    def _inputs(self, n: int) -> dict[str, Any]:
        return {
            "text": self.buffers["text"][:n],
            "text_mask": self.masks["text"][:n],
            "audio": self.buffers["audio"][:n],
            "audio_mask": self.masks["audio"][:n],
            "video": self.buffers["video"][:n],
            "video_mask": self.masks["video"][:n],
        }

    def _forward(self, n: int):
        with torch.inference_mode():
            if self.fast == "trace" and not self.use_graphs:
                traced = self._traced.get(n) or self._trace(n)
                if traced is not None:
                    return _Details(*traced(*self._inputs(n).values()))
            if not self.use_graphs:
                return self.model(**self._inputs(n), details=True)
            graph = self._graphs.get(n) or self._capture(n)
            if graph is None:
                return self.model(**self._inputs(n), details=True)
            g, out = graph
            g.replay()
            return out

    def _trace(self, n: int):
        """Trace the forward pass at batch size n into a frozen TorchScript graph (falls back to eager)."""
        inputs = tuple(self._inputs(n).values())
        try:
            with torch.inference_mode(False), torch.no_grad():
                # trace on private copies: the graph must not hold the live buffers as constants
                example = tuple(x.clone() for x in inputs)
                with warnings.catch_warnings():  # shape checks become constants: the buffers' shapes are fixed
                    warnings.simplefilter("ignore", torch.jit.TracerWarning)
                    traced = torch.jit.trace(_DetailedForward(self.model), example, check_trace=False)
                # frozen (weights as constants) and optimised for inference (oneDNN where it
                # pays): 10-15 % less CPU than a plain frozen graph here, scores equal
                traced = torch.jit.optimize_for_inference(traced.eval())
            with torch.inference_mode():
                traced(*inputs)
                traced(*inputs)  # the profiling executor optimises on the second call
        except Exception as exc:  # an op that cannot be traced: score eagerly
            log.warning("tracing the model failed (%s); scoring eagerly", exc)
            self.fast = "eager"
            return None
        self._traced[n] = traced
        return traced

    def _capture(self, n: int):
        """Capture the forward pass for batch size n as a CUDA graph (falls back to eager)."""
        inputs = self._inputs(n)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        try:
            with torch.cuda.stream(stream):
                for _ in range(3):
                    self.model(**inputs, details=True)
            torch.cuda.current_stream().wait_stream(stream)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                out = self.model(**inputs, details=True)
        except Exception as exc:  # an op that cannot be captured: run eagerly
            log.warning("CUDA graph capture failed (%s); scoring without graphs", exc)
            self.use_graphs = False
            torch.cuda.synchronize()
            return None
        self._graphs[n] = (g, out)
        return self._graphs[n]

    def score(self, window) -> ScoreResult:
        return self.score_many([window])[0]

    def score_many(self, windows: Sequence) -> list[ScoreResult]:
        """Score up to `max_streams` windows (one per stream) in one batched pass."""
        if not windows:
            return []
        if len(windows) > self.max_streams:
            raise ValueError(f"{len(windows)} windows but the scorer holds {self.max_streams} streams (max_streams)")
        n = len(windows)
        text_ms = []
        for i, w in enumerate(windows):
            t0 = time.perf_counter()
            feats = w.text_features if getattr(w, "text_features", None) is not None else self.encode_text(w.text)
            text_ms.append((time.perf_counter() - t0) * 1000)
            self._fill(i, w, feats)
        t0 = time.perf_counter()
        self._upload(n)
        out = self._forward(n)
        scores = out.score.float().cpu().numpy().copy()
        weights = {m: out.weights[m].float().cpu().numpy().copy() for m in out.weights}
        attention = out.attention.float().mean(dim=1).cpu().numpy().copy() if out.attention is not None else None
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        model_ms = (time.perf_counter() - t0) * 1000
        self.step_ms.add(model_ms)
        return [
            ScoreResult(
                score=float(scores[i]),
                weights={m: weights[m][i].tolist() for m in weights},
                attention=attention[i].tolist() if attention is not None else None,
                text_ms=text_ms[i],
                model_ms=model_ms / n,
            )
            for i in range(n)
        ]

    def stats(self) -> dict[str, Any]:
        return {"step_ms": self.step_ms.summary(), "text_cache": {"hits": self.text_hits, "misses": self.text_misses},
                "text_runtime": self.text_encoder.runtime}

    def buffer_pointers(self) -> dict[str, int]:
        """data_ptr of every input buffer (tests: they never change)."""
        ptrs = {f"{m}": self.buffers[m].data_ptr() for m in MODALITIES}
        ptrs.update({f"{m}_mask": self.masks[m].data_ptr() for m in MODALITIES})
        return ptrs


@dataclass
class _Details:
    """The parts of `HCLOutput` the scorer reads, from a traced graph's tuple."""

    score: Any
    weights_stacked: Any
    attention: Any

    def __post_init__(self) -> None:
        if self.attention.numel() == 0:  # the model shows no attention map
            self.attention = None

    @property
    def weights(self) -> dict[str, Any]:
        if self.weights_stacked.shape[1] == 0:
            return {}
        return {m: self.weights_stacked[:, i] for i, m in enumerate(MODALITIES)}


def _DetailedForward(model):
    """`model(..., details=True)` as a module returning tensors only (for tracing):
    (score (B,), COWA weights (B, 3, K) or (B, 0, K), shown attention map)."""
    class DetailedForward(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, text, text_mask, audio, audio_mask, video, video_mask):
            out = self.model(text, text_mask, audio, audio_mask, video, video_mask, details=True)
            if out.weights:
                weights = torch.stack([out.weights[m] for m in MODALITIES], dim=1)
            else:
                weights = out.score.new_zeros(out.score.shape[0], 0, 1)
            attention = out.attention if out.attention is not None else out.score.new_zeros(0)
            return out.score, weights, attention

    return DetailedForward().eval()
