"""Replacing a file atomically: a reader sees the old file or the new one, never a part.

The new content goes to a temporary file beside the target (same folder, so the
same filesystem), is flushed and fsync'ed, then `os.replace`d over the target.
When writing fails (a full disk, an exception in the caller's block) the old file
stays as it was and the temporary file is removed.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
from typing import IO, Iterator


def _temporary(path: pathlib.Path) -> pathlib.Path:
    # a hidden name with a ".tmp" suffix: listings skip it, and a leftover is easy to spot
    return path.with_name(f".{path.name}.tmp")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", *, encoding: str | None = "utf-8") -> Iterator[IO]:
    """`with atomic_write(p, "wb") as f: ...` writes `f` to `p` when the block ends
    without an exception; mode is "w" (text, `encoding`) or "wb" (bytes)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write writes whole files: mode must be 'w' or 'wb', not {mode!r}")
    path = pathlib.Path(path)
    tmp = _temporary(path)
    try:
        with open(tmp, mode, encoding=encoding if mode == "w" else None) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> None:
    """Replace `path` by `text` atomically (see the module docstring)."""
    with atomic_write(path, "w", encoding=encoding) as f:
        f.write(text)
