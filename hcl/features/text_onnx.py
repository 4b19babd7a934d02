"""The text encoder on onnxruntime: its graph exported once, kept on disk, and run.

The live scorer runs its text encoder (fine-tuned layers installed) in onnxruntime,
which gives PyTorch's hidden states within 1e-5 in about two thirds of the time on one
thread. Exporting the graph means loading the torch model and tracing it: for
e5-small that left about 2 GB in the process for the rest of its life (the torch
model, the tracer's leftovers, the session) and took several seconds. A session read
back from the saved graph costs about 0.5 GB and a second, and the torch model is
never loaded (`bench/sessions_bench.py` reports the server's RSS).

A graph is keyed by what decides its weights (`graph_key`): the encoder's name and
resolved path (a folder's files by name, size and time), the fine-tuned layers' exact
bytes, int8 or not, and `GRAPH_VERSION`. Files are written under a temporary name and
renamed, so a process that dies mid-write leaves no half graph, and two processes
exporting the same graph at once both end with a whole one. The folder keeps the
`KEEP_GRAPHS` most recently used graphs (each is the size of the encoder: 90 MB for
MiniLM, 470 MB for e5-small).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnxruntime
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic

from hcl.cache import default_cache_dir
from hcl.features.config import TextFeatureConfig

# bump when `export_graph` changes the graph it writes (inputs, outputs, opset)
GRAPH_VERSION = 1
KEEP_GRAPHS = 4

log = logging.getLogger(__name__)
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


def export_graph(model, sample: dict, *, int8: bool = False) -> bytes:
    """`model` (a loaded `transformers` encoder) as an ONNX graph whose outputs are every
    hidden state (embeddings, then each layer), traced on `sample` (tokenizer tensors)."""
    # export from a padded batch: transformers drops an all-ones attention mask while
    # tracing, and a graph traced that way would ignore padding
    if bool(sample["attention_mask"].all()):
        raise ValueError("export the text encoder from a padded batch (an attention mask with zeros)")
    names = [n for n in INPUT_NAMES if n in sample]

    class Hidden(torch.nn.Module):
        def __init__(self, encoder) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, *inputs):
            return self.encoder(**dict(zip(names, inputs)), output_hidden_states=True).hidden_states

    outputs = [f"hidden_{i}" for i in range(model.config.num_hidden_layers + 1)]
    axes = {n: {0: "batch", 1: "tokens"} for n in names + outputs}
    graph = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on constant shapes: the axes are dynamic
        torch.onnx.export(Hidden(model).eval(), tuple(sample[n].cpu() for n in names), graph, input_names=names,
                          output_names=outputs, dynamic_axes=axes, opset_version=17, dynamo=False)
    data = graph.getvalue()
    return quantize_int8(data) if int8 else data


def quantize_int8(graph: bytes) -> bytes:
    """An ONNX encoder graph with its matrix products in int8: weights quantised per output
    channel, activations per call (onnxruntime's dynamic quantisation). Embedding tables and
    LayerNorms stay float32."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(graph)
        quantize_dynamic(onnx.load(str(src)), str(dst), op_types_to_quantize=["MatMul"], per_channel=True,
                         weight_type=QuantType.QInt8)
        return dst.read_bytes()


class OnnxEncoder:
    """An exported encoder graph (bytes or a file) run by onnxruntime.

    Called with the tokenizer's tensors, it returns every hidden state (embeddings,
    then each layer) as float32 arrays (B, L, D), like `output_hidden_states=True`.
    """

    def __init__(self, graph: bytes | Path, *, threads: int = 1) -> None:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        # no busy-waiting between calls: the live encoder runs twice a second per session,
        # and spinning threads would take the cores from the speech engine and the face models
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        source = str(graph) if isinstance(graph, Path) else graph
        self.session = onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        self.names = [i.name for i in self.session.get_inputs()]
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    def __call__(self, enc) -> list[np.ndarray]:
        return self.session.run(None, {n: enc[n].cpu().numpy() for n in self.names})


def _folder_identity(path: str) -> list:
    """Name, size and mtime of each file in an encoder folder ([] for a hub name)."""
    folder = Path(path)
    if not folder.is_dir():
        return []
    return [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(folder.iterdir()) if f.is_file()]


def graph_key(config: TextFeatureConfig, path: str, tuned_state: dict | None, *, int8: bool) -> str:
    """What decides an exported graph's weights, hashed (24 hex digits)."""
    h = hashlib.sha256()
    meta = {"version": GRAPH_VERSION, "encoder": config.encoder, "path": str(path), "files": _folder_identity(path),
            "tuned_layers": config.tuned_layers, "int8": bool(int8)}
    h.update(json.dumps(meta, sort_keys=True).encode())
    for name, tensor in sorted((tuned_state or {}).items()):
        raw = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)  # the exact bytes, any dtype
        h.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        h.update(raw.numpy().tobytes())
    return h.hexdigest()[:24]


def graph_dir(cache: Path | None = None) -> Path:
    return (cache or default_cache_dir()) / "text-graphs"


def save_graph(data: bytes, path: Path) -> None:
    """Write `data` to `path` whole or not at all (a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _prune(folder: Path, keep: int) -> None:
    """Delete all but the `keep` most recently used graphs."""
    graphs = sorted(folder.glob("*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in graphs[keep:]:
        old.unlink(missing_ok=True)


def cached_encoder(key: str, export: Callable[[], bytes], *, threads: int = 1, cache: Path | None = None,
                   keep: int = KEEP_GRAPHS) -> tuple[OnnxEncoder, bool]:
    """The encoder of graph `key`: read from the cache, else `export()`ed and saved there.
    Returns (encoder, read_from_cache). A cached file onnxruntime cannot read is exported anew."""
    path = graph_dir(cache) / f"{key}.onnx"
    if path.is_file():
        try:
            encoder = OnnxEncoder(path, threads=threads)
            path.touch()  # recently used: kept by _prune
            return encoder, True
        except Exception:  # noqa: BLE001 - a damaged or half-pruned file: export it again
            path.unlink(missing_ok=True)
    data = export()
    try:
        save_graph(data, path)
        _prune(path.parent, keep)
    except OSError as exc:  # a read-only or full cache: run from memory, export again next time
        log.warning("could not keep the text encoder's graph in %s (%s); it is exported again at the next start. "
                    "Set HCL_CACHE to a writable folder with room for it.", path.parent, exc)
    return OnnxEncoder(data, threads=threads), False
