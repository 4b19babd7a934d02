"""HCL: Hierarchical Collaborative Learning for multimodal sentiment analysis.

`import hcl` stays light: heavy optional parts (transformers, mediapipe,
faster-whisper, PyAV, sounddevice) are imported only where used.
"""

__version__ = "0.1.0"

from hcl.config import ModelConfig, TrainConfig  # noqa: E402

__all__ = ["ModelConfig", "TrainConfig", "__version__"]
