"""argparse value types for the commands: a bad value stops at parse time with
exit code 2 and a message that says what to give, never a traceback later.

Used by hcl-train, hcl-eval and hcl-extract (and by the realtime commands'
options), so one rule names one idea: a count of threads is 0 (default) or
more, a batch size 1 or more, a rate a finite number above 0, a share a number
from 0 to 1.
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path


def _number(text: str, kind):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'a whole number' if kind is int else 'a number'}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def integer(text: str) -> int:
    """A whole number (the caller checks its range)."""
    return _number(text, int)


def at_least(low: int):
    """An integer >= low."""
    def parse(text: str) -> int:
        value = _number(text, int)
        if value < low:
            raise argparse.ArgumentTypeError(f"{value}: give {low} or more")
        return value
    parse.__name__ = f"integer >= {low}"
    return parse


positive_int = at_least(1)
non_negative_int = at_least(0)


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rates, seconds, frame rates)."""
    value = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be above 0")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (weight decay)."""
    value = _number(text, float)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} must be 0 or more")
    return value


def share(text: str) -> float:
    """A number in [0, 1] (dropout, modality dropout, soft-target weight)."""
    value = _number(text, float)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not a share: give a number from 0 to 1")
    return value


def below_one(text: str) -> float:
    """A number in [0, 1): a dropout of 1 drops everything."""
    value = share(text)
    if value >= 1.0:
        raise argparse.ArgumentTypeError(f"{value} would drop everything: give a number from 0 up to (not) 1")
    return value


def existing_file(text: str) -> str:
    """A path to a file that exists (a label CSV, a pickle, a JSON)."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder: give the file itself (e.g. .../mosi/label.csv)")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    return text


def output_folder(text: str) -> str:
    """A folder to write into: may not exist yet, but must not be a file."""
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file: give a folder to write into (it is created if missing)")
    return text


DEVICES = ("auto", "cpu", "cuda")


def device_name(text: str) -> str:
    """--device: auto, cpu, cuda or cuda:N."""
    name = text.strip().lower()
    if name in DEVICES or re.fullmatch(r"cuda:\d+", name):
        return name
    raise argparse.ArgumentTypeError(f"{text!r} is not a device: choose auto, cpu, cuda or cuda:N (a GPU's index)")


def non_empty(text: str) -> str:
    """A value that is not blank (an address, a name)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty: give a value or leave the option out")
    return text
