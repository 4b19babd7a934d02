"""The repeat guard: a recogniser's hypothesis that loops gives its words once.

Decoders loop on audio cut mid-phrase ("My daughter. My daughter. My daughter.",
"the trick, the trick"). `drop_repeats` removes, within one pass's words:

- a run of n words (n >= 2) said again right after itself: the later copies go;
- one word said three or more times in a row: one stays ("had had" is English);
- a phrase of >= `LONG_NGRAM` words said again later in the same pass: the pass is
  cut where the second copy starts (a pass is a few seconds; such a repeat is a loop);
- with `max_items` (the most words the audio can hold, from its voiced time): a
  hypothesis longer than that is a loop that restarted ("The report and a fee on the
  report and a fee" from 1 s): it is cut where any two words come again, then to
  `max_items`.

Words compare on their letters and digits, lower case ("Cake," == "cake").
"""

from __future__ import annotations

import re
from typing import Callable, Sequence, TypeVar

T = TypeVar("T")
LONG_NGRAM = 7  # "it was the age of" (5 words) recurs in real prose


def norm(text: str) -> str:
    return re.sub(r"[^a-z0-9']", "", text.lower())


def _adjacent_repeat(keys: list[str]) -> tuple[int, int] | None:
    """(start, end) of the first later copy to drop, or None."""
    for i in range(len(keys)):
        if i + 2 < len(keys) and keys[i] == keys[i + 1] == keys[i + 2]:
            j = i + 1
            while j < len(keys) and keys[j] == keys[i]:
                j += 1
            return i + 1, j  # one stays
        for n in range(2, (len(keys) - i) // 2 + 1):
            if keys[i:i + n] == keys[i + n:i + 2 * n]:
                return i + n, i + 2 * n
    return None


def drop_repeats(items: Sequence[T], text: Callable[[T], str] = str, *, max_items: int | None = None) -> list[T]:
    """`items` (words, or anything whose `text(item)` is a word) without loops (see above)."""
    out = list(items)
    keys = [norm(text(item)) for item in out]
    while (cut := _adjacent_repeat(keys)) is not None:
        del out[cut[0]:cut[1]], keys[cut[0]:cut[1]]
    out = out[:_first_repeat(keys, LONG_NGRAM)]
    if max_items is not None and len(out) > max_items:
        out = out[:min(_first_repeat(keys, 2), max_items)]
    return out


def _first_repeat(keys: list[str], n: int) -> int:
    """Where an n-gram of `keys` that was said before (not overlapping) starts again; len(keys) if none."""
    seen: set[tuple[str, ...]] = set()
    for j in range(len(keys) - n + 1):
        if tuple(keys[j:j + n]) in seen:
            return j
        if j - n + 1 >= 0:  # the gram ending at j can be said again from j + 1 on
            seen.add(tuple(keys[j - n + 1:j + 1]))
    return len(keys)
