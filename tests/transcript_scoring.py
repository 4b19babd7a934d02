"""Scoring what a recogniser heard: word error rate in MOSI's transcript style, and the
reference texts of the real read speech the speech tests and benches use (bench/asr_bench.py,
bench/live_bench.py, bench/commit_bench.py, bench/sessions_bench.py, tests/test_moonshine.py)."""

from __future__ import annotations

import re

# moonshine-voice's demo audio `assets/two_cities.wav` (a person reading; public-domain text)
TWO_CITIES = (
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
    "foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of Light, "
    "it was the season of Darkness, it was the spring of hope, it was the winter of despair, we had "
    "everything before us, we had nothing before us, we were all going direct to Heaven, we were all going "
    "direct the other way - in short, the period was so far like the present period, that some of its "
    "noisiest authorities insisted on its being received, for good or for evil, in the superlative degree "
    "of comparison only."
)
# moonshine-cpp's `test-data/beckett.wav`
BECKETT = "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better."


def normalise_words(text: str) -> list[str]:
    """Lower case, letters and digits only (MOSI's transcript style: "don't" -> "dont")."""
    return [w for w in (re.sub(r"[^a-z0-9]", "", t) for t in text.lower().split()) if w]


def word_errors(reference: list[str], hypothesis: list[str]) -> int:
    """Word-level edit distance (substitutions + deletions + insertions)."""
    row = list(range(len(hypothesis) + 1))
    for i, r in enumerate(reference, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hypothesis, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def wer(reference: str, hypothesis: str) -> dict:
    ref, hyp = normalise_words(reference), normalise_words(hypothesis)
    errors = word_errors(ref, hyp)
    return {"wer_percent": round(100 * errors / max(1, len(ref)), 1), "errors": errors, "reference_words": len(ref),
            "hypothesis": " ".join(hyp)}
