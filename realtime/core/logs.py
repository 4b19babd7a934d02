"""Logging for the commands and the workers they start: levels, and the libraries' start-up chatter."""

from __future__ import annotations

import logging
import os
import sys


def setup_logging(verbose: bool) -> None:
    """Python logging at INFO (verbose) or WARNING; without --verbose the start-up chatter of
    the libraries (mediapipe / TFLite native lines, the "Loading weights" bars of the model
    loaders) is silenced too. Set before those libraries are imported."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("faster_whisper", "httpx", "websockets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if verbose:
        os.environ["HCL_NATIVE_LOGS"] = "1"  # read by hcl.features.face
        return
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers / huggingface_hub bars
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in ("transformers", "huggingface_hub", "sentence_transformers"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if "transformers" in sys.modules:  # imported already: its bar switch was read at import
        try:
            sys.modules["transformers"].utils.logging.disable_progress_bar()
        except AttributeError:
            pass
