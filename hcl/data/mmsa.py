"""Load the standard MMSA feature pickles (CMU-MOSI / CMU-MOSEI).

File layout (``aligned_50.pkl`` / ``unaligned_50.pkl`` as distributed with the
MMSA toolkit)::

    {"train": split, "valid": split, "test": split}
    split = {
        "text":              float (N, L_t, 768)   BERT features (L_t = 50)
        "text_bert":         int   (N, 3, L_t)     token ids / attention mask / segment ids
        "audio":             float (N, L_a, d_a)   COVAREP (MOSI d_a = 5, MOSEI 74)
        "vision":            float (N, L_v, d_v)   Facet (MOSI d_v = 20, MOSEI 35)
        "audio_lengths":     (N,) ints             valid rows of "audio"
        "vision_lengths":    (N,) ints             valid rows of "vision"
        "regression_labels": float (N,)            sentiment in [-3, 3]
        "id":                (N,) str              e.g. "03bSnISJMiM$_$11"
        "raw_text":          (N,) str
        ...                                        other keys are ignored
    }

Each sample becomes a `FeatureSample` with the padding cut off:

- text: the rows where the ``text_bert`` attention mask is 1 (the tokens the
  features belong to, [CLS] and [SEP] included); without ``text_bert``, the
  rows between the first and the last row that is not all zero.
- audio / vision: the first ``*_lengths[i]`` rows (clipped to the padded
  length); when the ``*_lengths`` key is missing (aligned pickles may omit
  it), the rows between the first and last row that is not all zero. Masks
  are all True over the kept rows; a length of 0 gives an absent modality
  (shape (0, d)), which `collate` turns into an all-False mask row.
- Non-finite values: MMSA's MOSI COVAREP audio contains ``-inf`` (and some
  releases NaN). Every NaN / +-inf in text, audio and vision is replaced by 0
  (MMSA itself zeroes ``-inf`` in audio); `FeatureSample.meta["nonfinite"]`
  counts how many values were replaced in that sample.

Safety: pickles can run arbitrary code when loaded. By default the file is
read with `SafeUnpickler`, which only rebuilds numpy arrays, dtypes and numpy
scalars (plus the builtin containers pickle encodes without globals) and
raises `UnsafePickleError` for anything else. Pass ``trust=True`` only for a
file you made yourself or got from a source you trust; it uses plain `pickle`.
"""

from __future__ import annotations

import importlib
import os
import pickle
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from hcl.data.sample import FeatureSample

MOSI_DIMS: tuple[int, int, int] = (768, 5, 20)
MOSEI_DIMS: tuple[int, int, int] = (768, 74, 35)
SPLITS: tuple[str, ...] = ("train", "valid", "test")

# (module, name) pairs the safe unpickler may resolve. numpy 1.x writes
# "numpy.core.*", numpy 2.x "numpy._core.*"; both are accepted and resolved to
# whichever the installed numpy provides. "_codecs.encode" is how protocol-2
# pickles written by Python 3 encode `bytes` (array buffers); it only
# transcodes a string with a registered codec.
_ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
    }
)

TextEncoder = Callable[[np.ndarray], np.ndarray]
"""Maps MMSA ``text_bert`` (N, 3, L) int (ids / mask / segments) to (N, L, D) float features."""


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for a global outside the numpy allow-list; nothing was run."""


class MMSAFormatError(ValueError):
    """The file does not follow the MMSA feature-pickle layout."""


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that can only rebuild numpy arrays, dtypes and numpy scalars.

    Any other global (functions such as ``os.system``, arbitrary classes) is
    refused with `UnsafePickleError` before it is looked up, so a malicious
    payload never runs.
    """

    def __init__(self, file: Any, *, source: str = "<pickle>", **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f"{self._source}: refused to load global {module}.{name}; the safe loader only "
                "rebuilds numpy arrays. If you trust this file, load it with trust=True."
            )
        return getattr(importlib.import_module(_numpy_module(module)), name)

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self._source}: refused persistent id {pid!r}")


def _numpy_module(module: str) -> str:
    """Map numpy.core.X <-> numpy._core.X to the one this numpy has."""
    has_private_core = hasattr(np, "_core")
    if has_private_core and module.startswith("numpy.core."):
        return "numpy._core." + module[len("numpy.core.") :]
    if not has_private_core and module.startswith("numpy._core."):
        return "numpy.core." + module[len("numpy._core.") :]
    return module


def load_pickle(path: str | os.PathLike[str], *, trust: bool = False) -> Any:
    """Read a pickle file; numpy-only safe mode unless ``trust=True``.

    Raises FileNotFoundError (naming the file) and `UnsafePickleError`.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"MMSA feature pickle not found: {p}")
    with p.open("rb") as f:
        if trust:
            return pickle.load(f, encoding="latin1")
        return SafeUnpickler(f, source=str(p), encoding="latin1").load()


def load_mmsa(
    path: str | os.PathLike[str],
    *,
    trust: bool = False,
    splits: Iterable[str] = SPLITS,
    text_encoder: TextEncoder | None = None,
    label_key: str = "regression_labels",
    expect_dims: tuple[int, int, int] | None = None,
) -> dict[str, list[FeatureSample]]:
    """Load an MMSA ``aligned_50.pkl`` / ``unaligned_50.pkl`` into FeatureSamples.

    Args:
        path: the pickle.
        trust: use plain `pickle` instead of the numpy-only safe loader.
        splits: which splits to read (each must be in the file).
        text_encoder: optional callable for ``text_bert`` (N, 3, L) ->
            features (N, L, D). When given it is used (and ``text_bert`` must
            be present); otherwise the precomputed ``text`` features are used.
        label_key: the label array (MMSA also has ``classification_labels``).
        expect_dims: e.g. `MOSI_DIMS` / `MOSEI_DIMS`; a mismatch raises.

    Returns:
        ``{split: [FeatureSample]}``, samples in file order, ``mode`` = split,
        ``text`` (L_t_i, D_t), ``audio`` (L_a_i, d_a), ``video`` (L_v_i, d_v)
        float32, masks (L_i,) bool all True, ``meta`` with ``raw_text`` and
        ``nonfinite``.

    Raises:
        FileNotFoundError, UnsafePickleError, MMSAFormatError (naming the key,
        split and file).
    """
    source = str(path)
    data = load_pickle(path, trust=trust)
    if not isinstance(data, dict):
        raise MMSAFormatError(
            f"{source}: expected a dict with splits {list(SPLITS)} at the top level, "
            f"got {type(data).__name__}"
        )
    out: dict[str, list[FeatureSample]] = {}
    for split in splits:
        if split not in data:
            raise MMSAFormatError(
                f"{source}: missing split {split!r} (file has {sorted(map(str, data))})"
            )
        out[split] = _load_split(
            data[split], split, source, text_encoder=text_encoder, label_key=label_key,
            expect_dims=expect_dims,
        )
    return out


def _require(split_data: dict, key: str, split: str, source: str) -> Any:
    if key not in split_data:
        raise MMSAFormatError(
            f"{source}: split {split!r} has no key {key!r} (keys: {sorted(map(str, split_data))})"
        )
    return split_data[key]


def _float_3d(value: Any, key: str, split: str, source: str, n: int | None) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 3 or (n is not None and arr.shape[0] != n):
        want = f"({n}, L, D)" if n is not None else "(N, L, D)"
        raise MMSAFormatError(f"{source}: split {split!r} key {key!r} has shape {arr.shape}, expected {want}")
    try:
        return arr.astype(np.float32, copy=False)
    except (TypeError, ValueError) as exc:
        raise MMSAFormatError(f"{source}: split {split!r} key {key!r} is not numeric ({arr.dtype})") from exc


def _lengths(split_data: dict, key: str, split: str, source: str, n: int) -> np.ndarray | None:
    if key not in split_data:
        return None
    lengths = np.asarray(split_data[key]).reshape(-1)
    if lengths.shape[0] != n:
        raise MMSAFormatError(f"{source}: split {split!r} key {key!r} has {lengths.shape[0]} entries, expected {n}")
    try:
        as_int = lengths.astype(np.int64)
    except (TypeError, ValueError) as exc:
        raise MMSAFormatError(f"{source}: split {split!r} key {key!r} must hold integers") from exc
    if (as_int < 0).any():
        raise MMSAFormatError(f"{source}: split {split!r} key {key!r} has negative lengths")
    return as_int


def _nonzero_span(x: np.ndarray) -> slice:
    """Rows between the first and last row that is not all zero. x: (L, D)."""
    rows = np.flatnonzero(np.any(x != 0, axis=1))
    if rows.size == 0:
        return slice(0, 0)
    return slice(int(rows[0]), int(rows[-1]) + 1)


def _cut(x: np.ndarray, length: int | None) -> np.ndarray:
    """Valid rows of a padded (L, D) sequence: the first `length` rows (clipped
    to L), or the non-zero span when the length is unknown."""
    if length is not None:
        return x[: min(length, len(x))]
    return x[_nonzero_span(np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0))]


def _clean(x: np.ndarray) -> tuple[np.ndarray, int]:
    """Replace NaN / +-inf by 0; returns (float32 copy, how many were replaced)."""
    bad = ~np.isfinite(x)
    count = int(bad.sum())
    out = np.array(x, dtype=np.float32, copy=True)
    if count:
        out[bad] = 0.0
    return out, count


def _to_str(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _load_split(
    split_data: Any,
    split: str,
    source: str,
    *,
    text_encoder: TextEncoder | None,
    label_key: str,
    expect_dims: tuple[int, int, int] | None,
) -> list[FeatureSample]:
    if not isinstance(split_data, dict):
        raise MMSAFormatError(f"{source}: split {split!r} should be a dict, got {type(split_data).__name__}")

    labels = np.asarray(_require(split_data, label_key, split, source)).reshape(-1)
    n = labels.shape[0]
    try:
        labels = labels.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise MMSAFormatError(f"{source}: split {split!r} key {label_key!r} is not numeric") from exc
    if not np.isfinite(labels).all():
        raise MMSAFormatError(f"{source}: split {split!r} key {label_key!r} contains NaN/inf labels")
    ids = np.asarray(_require(split_data, "id", split, source)).reshape(-1)
    if ids.shape[0] != n:
        raise MMSAFormatError(f"{source}: split {split!r} key 'id' has {ids.shape[0]} entries, expected {n}")
    raw_text = split_data.get("raw_text")
    if raw_text is not None:
        raw_text = np.asarray(raw_text).reshape(-1)
        if raw_text.shape[0] != n:
            raise MMSAFormatError(f"{source}: split {split!r} key 'raw_text' has {raw_text.shape[0]} entries, expected {n}")

    # ---- text
    text_mask: np.ndarray | None = None
    if "text_bert" in split_data:
        tb = np.asarray(split_data["text_bert"])
        if tb.ndim != 3 or tb.shape[0] != n or tb.shape[1] != 3:
            raise MMSAFormatError(
                f"{source}: split {split!r} key 'text_bert' has shape {tb.shape}, expected ({n}, 3, L) "
                "(token ids / attention mask / segment ids)"
            )
        text_mask = tb[:, 1, :] > 0
    if text_encoder is not None:
        if "text_bert" not in split_data:
            raise MMSAFormatError(
                f"{source}: split {split!r} has no key 'text_bert' for text_encoder; drop text_encoder "
                "to use the precomputed 'text' features"
            )
        text = _float_3d(text_encoder(np.asarray(split_data["text_bert"])), "text_encoder(text_bert)", split, source, n)
    elif "text" in split_data:
        text = _float_3d(split_data["text"], "text", split, source, n)
    elif "text_bert" in split_data:
        raise MMSAFormatError(
            f"{source}: split {split!r} has only 'text_bert' (BERT token ids/mask/segments, shape (N, 3, L)); "
            "token inputs need a BERT encoder to become features. Either use a pickle that has the "
            "precomputed 'text' features (N, L, 768), or pass text_encoder=callable mapping text_bert "
            "(N, 3, L) to features (N, L, D)."
        )
    else:
        raise MMSAFormatError(f"{source}: split {split!r} has no key 'text' (nor 'text_bert')")
    if text_mask is not None and text_mask.shape[1] != text.shape[1]:
        raise MMSAFormatError(
            f"{source}: split {split!r}: 'text_bert' length {text_mask.shape[1]} differs from text "
            f"feature length {text.shape[1]}"
        )

    # ---- audio / vision
    audio = _float_3d(_require(split_data, "audio", split, source), "audio", split, source, n)
    vision = _float_3d(_require(split_data, "vision", split, source), "vision", split, source, n)
    audio_len = _lengths(split_data, "audio_lengths", split, source, n)
    vision_len = _lengths(split_data, "vision_lengths", split, source, n)

    dims = (text.shape[2], audio.shape[2], vision.shape[2])
    if expect_dims is not None and tuple(expect_dims) != dims:
        raise MMSAFormatError(
            f"{source}: split {split!r} has feature dims (text, audio, vision) = {dims}, expected "
            f"{tuple(expect_dims)} (MOSI {MOSI_DIMS}, MOSEI {MOSEI_DIMS})"
        )

    samples: list[FeatureSample] = []
    for i in range(n):
        if text_mask is not None:
            t_raw = text[i][text_mask[i]]
        else:
            t_raw = _cut(text[i], None)
        t_clean, t_bad = _clean(t_raw)
        a, a_bad = _clean(_cut(audio[i], None if audio_len is None else int(audio_len[i])))
        v, v_bad = _clean(_cut(vision[i], None if vision_len is None else int(vision_len[i])))
        meta: dict[str, Any] = {"nonfinite": t_bad + a_bad + v_bad, "source": source}
        if raw_text is not None:
            meta["raw_text"] = _to_str(raw_text[i])
        samples.append(
            FeatureSample(
                id=_to_str(ids[i]),
                label=float(labels[i]),
                mode=split,
                text=t_clean,
                audio=a,
                video=v,
                audio_mask=np.ones(len(a), dtype=bool),
                video_mask=np.ones(len(v), dtype=bool),
                meta=meta,
            )
        )
    return samples
