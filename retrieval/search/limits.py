"""Bounds on what users ask for, checked at the edge (CLI, API, page) before
anything is allocated: a k of 10**15 or NaN is one clear line, not an
out-of-memory kill or an OverflowError."""

import math

from retrieval.errors import LookalikeError

MAX_K = 50


def whole_number(value, name: str, low: int, high: int) -> int:
    """`value` (an int, a whole float, or digits) as an int within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise LookalikeError(f"{name} must be a whole number from {low} to {high}")
    try:
        number = float(value)
    except ValueError:
        raise LookalikeError(f"{name} must be a whole number from {low} to {high}, not {shown(value)}") from None
    if not math.isfinite(number) or number != int(number) or not low <= number <= high:
        raise LookalikeError(f"{name} must be a whole number from {low} to {high}, not {shown(value)}")
    return int(number)


def shown(value, limit: int = 60) -> str:
    """A user's input as a message may echo it: repr, cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text):,} characters)"
