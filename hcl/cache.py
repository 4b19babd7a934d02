"""Where the on-disk caches live (encoded text features, encoders built from packages).

`$HCL_CACHE`, else `~/.cache/hcl-live`. A module of its own so that the data loaders and
the feature extractors can both import it without importing each other.
"""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    return Path(os.environ.get("HCL_CACHE", Path.home() / ".cache" / "hcl-live"))
