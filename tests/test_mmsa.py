"""MMSA pickle loader on small files written in the MMSA schema."""

from __future__ import annotations

import collections
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from hcl.data.mmsa import (
    MOSEI_DIMS,
    MOSI_DIMS,
    MMSAFormatError,
    UnsafePickleError,
    load_mmsa,
    load_pickle,
)
from hcl.data.sample import collate

L_T, L_A, L_V = 50, 30, 40
SIZES = {"train": 4, "valid": 3, "test": 2}


def _split(n: int, dims: tuple[int, int, int], rng: np.random.Generator, split: str) -> dict:
    d_t, d_a, d_v = dims
    text_len = rng.integers(3, L_T + 1, size=n)
    text_len[0] = L_T  # one full-length sample
    audio_len = rng.integers(1, L_A + 1, size=n)
    audio_len[-1] = 0  # one sample without audio
    vision_len = rng.integers(1, L_V + 1, size=n)
    ids_bert = np.zeros((n, 3, L_T), dtype=np.int64)
    text = np.zeros((n, L_T, d_t), dtype=np.float32)
    audio = np.zeros((n, L_A, d_a), dtype=np.float32)
    vision = np.zeros((n, L_V, d_v), dtype=np.float32)
    for i in range(n):
        ids_bert[i, 0, : text_len[i]] = rng.integers(1000, 2000, size=text_len[i])
        ids_bert[i, 1, : text_len[i]] = 1
        # BERT features exist at every position, padding included: the mask decides
        text[i] = rng.normal(size=(L_T, d_t))
        audio[i, : audio_len[i]] = rng.normal(size=(audio_len[i], d_a))
        vision[i, : vision_len[i]] = rng.normal(size=(vision_len[i], d_v))
    if audio_len[0] > 0:
        audio[0, 0, 0] = -np.inf  # as in MMSA's MOSI COVAREP
        audio[0, 0, 1] = np.nan
    return {
        "raw_text": np.array([f"{split} sentence {i}" for i in range(n)], dtype=object),
        "id": np.array([f"vid{split}$_${i}" for i in range(n)], dtype=object),
        "text": text,
        "text_bert": ids_bert,
        "audio": audio,
        "vision": vision,
        "audio_lengths": [int(x) for x in audio_len],
        "vision_lengths": [int(x) for x in vision_len],
        "regression_labels": rng.uniform(-3, 3, size=n).astype(np.float32),
        "classification_labels": np.zeros(n, dtype=np.float32),
        "annotations": np.array(["Neutral"] * n, dtype=object),
    }


def _data(dims: tuple[int, int, int] = MOSI_DIMS, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {s: _split(n, dims, rng, s) for s, n in SIZES.items()}


def _write(path: Path, obj: object, protocol: int = 4) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_load_mosi_schema(tmp_path: Path, protocol: int) -> None:
    data = _data()
    path = _write(tmp_path / "unaligned_50.pkl", data, protocol)
    out = load_mmsa(path, expect_dims=MOSI_DIMS)
    assert list(out) == ["train", "valid", "test"]
    for split, n in SIZES.items():
        src = data[split]
        samples = out[split]
        assert len(samples) == n
        for i, s in enumerate(samples):
            t_len = int(src["text_bert"][i, 1].sum())
            assert s.mode == split
            assert s.id == f"vid{split}$_${i}"
            assert s.meta["raw_text"] == f"{split} sentence {i}"
            assert s.label == pytest.approx(float(src["regression_labels"][i]))
            assert s.text.shape == (t_len, 768) and s.text.dtype == np.float32
            np.testing.assert_array_equal(s.text, src["text"][i, :t_len])
            assert s.audio.shape == (src["audio_lengths"][i], 5)
            assert s.video.shape == (src["vision_lengths"][i], 20)
            assert s.audio_mask.shape == (len(s.audio),) and s.audio_mask.all()
            assert s.video_mask.shape == (len(s.video),) and s.video_mask.all()
            assert np.isfinite(s.audio).all()
    first = out["train"][0]
    assert first.audio[0, 0] == 0.0 and first.audio[0, 1] == 0.0  # -inf / NaN -> 0
    assert first.meta["nonfinite"] == 2
    np.testing.assert_array_equal(first.audio[1:], data["train"]["audio"][0, 1 : len(first.audio)])
    assert out["train"][-1].audio.shape == (0, 5)  # audio length 0 -> absent

    batch = collate(out["train"], dims=MOSI_DIMS)
    assert batch.text_mask.sum(1).tolist() == [len(s.text) for s in out["train"]]
    assert batch.audio_mask.sum(1).tolist() == data["train"]["audio_lengths"]
    assert batch.video_mask.sum(1).tolist() == data["train"]["vision_lengths"]
    assert not batch.audio_mask[-1].any()


def test_numpy1_pickles_load(tmp_path: Path) -> None:
    """Pickles written by numpy 1.x name numpy.core.*; they must load under numpy 2 too."""
    blob = pickle.dumps(_data(), protocol=2)
    blob = blob.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    assert b"numpy._core" not in blob
    path = tmp_path / "old.pkl"
    path.write_bytes(blob)
    out = load_mmsa(path, splits=["test"])
    assert len(out["test"]) == SIZES["test"]


def test_mosei_dims_and_dim_check(tmp_path: Path) -> None:
    path = _write(tmp_path / "mosei.pkl", _data(MOSEI_DIMS, seed=1))
    out = load_mmsa(path, splits=["valid"], expect_dims=MOSEI_DIMS)
    assert out["valid"][0].audio.shape[1] == 74 and out["valid"][0].video.shape[1] == 35
    with pytest.raises(MMSAFormatError, match=r"dims.*\(768, 74, 35\)"):
        load_mmsa(path, expect_dims=MOSI_DIMS)


def test_text_bert_only(tmp_path: Path) -> None:
    data = _data()
    for split in data.values():
        del split["text"]
    path = _write(tmp_path / "bert_only.pkl", data)
    with pytest.raises(MMSAFormatError, match="only 'text_bert'.*BERT encoder.*text_encoder"):
        load_mmsa(path)

    def encoder(text_bert: np.ndarray) -> np.ndarray:
        # (N, 3, L) -> (N, L, 4): token id scaled, repeated
        ids = text_bert[:, 0, :].astype(np.float32)[:, :, None] / 1000.0
        return np.repeat(ids, 4, axis=2)

    out = load_mmsa(path, text_encoder=encoder)
    s = out["valid"][1]
    tb = data["valid"]["text_bert"][1]
    n_tok = int(tb[1].sum())
    assert s.text.shape == (n_tok, 4)
    np.testing.assert_allclose(s.text[:, 0], tb[0, :n_tok] / 1000.0)


def test_lengths_missing_uses_nonzero_span(tmp_path: Path) -> None:
    data = _data()
    for split in data.values():
        del split["audio_lengths"], split["vision_lengths"], split["text_bert"]
        split["text"][:, 45:] = 0.0  # trailing zero padding
    path = _write(tmp_path / "aligned_50.pkl", data)
    out = load_mmsa(path, splits=["train"])
    s = out["train"][1]
    assert s.text.shape == (45, 768)
    src_v = data["train"]["vision"][1]
    last = int(np.flatnonzero(np.any(src_v != 0, axis=1))[-1]) + 1
    assert s.video.shape == (last, 20)


def test_missing_key_and_split(tmp_path: Path) -> None:
    data = _data()
    del data["valid"]["vision"]
    path = _write(tmp_path / "broken.pkl", data)
    with pytest.raises(MMSAFormatError, match=r"broken\.pkl.*'valid'.*'vision'"):
        load_mmsa(path)
    data = _data()
    del data["test"]
    path = _write(tmp_path / "nosplit.pkl", data)
    with pytest.raises(MMSAFormatError, match=r"nosplit\.pkl.*missing split 'test'"):
        load_mmsa(path)
    assert set(load_mmsa(path, splits=["train", "valid"])) == {"train", "valid"}
    data = _data()
    data["train"]["audio_lengths"] = [1, 2]
    path = _write(tmp_path / "badlen.pkl", data)
    with pytest.raises(MMSAFormatError, match="audio_lengths"):
        load_mmsa(path)
    with pytest.raises(FileNotFoundError, match="nothere.pkl"):
        load_mmsa(tmp_path / "nothere.pkl")
    path = _write(tmp_path / "list.pkl", [1, 2])
    with pytest.raises(MMSAFormatError, match="top level"):
        load_mmsa(path)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: D105
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    data = _data()
    data["train"]["raw_text"] = _Evil(marker)
    path = _write(tmp_path / "evil.pkl", data)
    with pytest.raises(UnsafePickleError, match=r"evil\.pkl.*system"):
        load_mmsa(path)
    assert not marker.exists()
    with pytest.raises(UnsafePickleError):
        load_pickle(path)
    assert not marker.exists()


def test_trust_opt_in_allows_other_globals(tmp_path: Path) -> None:
    data = _data()
    odd = collections.OrderedDict(data)  # a harmless non-numpy global
    path = _write(tmp_path / "ordered.pkl", odd)
    with pytest.raises(UnsafePickleError, match="collections.OrderedDict.*trust=True"):
        load_mmsa(path)
    out = load_mmsa(path, trust=True)
    assert len(out["train"]) == SIZES["train"]
