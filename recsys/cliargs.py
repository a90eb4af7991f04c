"""Argument types shared by every ``python -m recsys`` verb, so each validates the same way.

argparse calls these on the raw string; a bad value becomes the usual
``error: argument --k: ...`` line and exit status 2, before anything is loaded or trained.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

#: upper bound for --k: more than any catalogue here, small enough to reject typos like 1e9
MAX_K = 10_000


def _number(text: str, cast):
    try:
        value = cast(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid {cast.__name__}") from None
    return value


def positive_int(text: str) -> int:
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def k_value(text: str) -> int:
    """How many recommendations: 1 to :data:`MAX_K`."""
    value = positive_int(text)
    if value > MAX_K:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_K}, got {value}")
    return value


def positive_float(text: str) -> float:
    value = _number(text, float)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text}")
    return value


def learning_rate(text: str) -> float:
    """A learning rate in (0, 10]: larger values only ever diverge."""
    value = positive_float(text)
    if value > 10:
        raise argparse.ArgumentTypeError(f"must be at most 10, got {text}")
    return value


def key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` of ``--option``; the value is read as JSON when it parses (``3``, ``true``), else kept as text."""
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--option takes KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value
