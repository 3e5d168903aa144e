"""Judging an answer against the expected value, with feedback that never gives the value away.

Each judge returns a :class:`Verdict`: whether the answer is right and, when it is not, one
sentence that says what kind of mistake it looks like (a percentage where a fraction was asked,
the wrong sign, the wrong shape) or which way and roughly how far it is off (too large by about
a factor of 10, a little too small), never the expected value or a number close to it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Verdict:
    """``correct``: the answer passes; ``message``: what is wrong with it ("" when correct)."""

    correct: bool
    message: str = ""


class AnswerTypeError(ValueError):
    """An answer of the wrong kind (a list for a number, a word for a letter); its message is
    the feedback."""


def as_number(answer: Any) -> float:
    """One number from a Python or NumPy number or a one-element array or tensor."""
    if isinstance(answer, bool):
        raise AnswerTypeError("the answer should be a number, not True or False.")
    if isinstance(answer, (Real, np.number)):
        return float(answer)
    size = getattr(answer, "size", None)
    size = answer.numel() if hasattr(answer, "numel") else size
    if size == 1 and hasattr(answer, "item"):
        return float(answer.item())
    raise AnswerTypeError(f"the answer should be one number, not a {type(answer).__name__}.")


def as_array(answer: Any) -> np.ndarray:
    """A float array from a list, a NumPy array or a torch tensor (any device)."""
    if hasattr(answer, "detach"):
        answer = answer.detach().cpu().numpy()
    try:
        return np.asarray(answer, dtype=float)
    except (TypeError, ValueError):
        raise AnswerTypeError(
            f"the answer should be an array of numbers, not a {type(answer).__name__}."
        ) from None


def _factor_words(factor: float) -> str:
    """How far off a ratio ``factor`` > 1 is, in words coarse enough to hide the value."""
    if factor < 1.1:
        return "but close (within 10%)"
    if factor < 1.5:
        return "by 10% to 50%"
    if factor < 3.0:
        return "by about a factor of 2"
    return f"by about a factor of {10 ** round(math.log10(factor)):,}"


def within(value: float, expected: float, rtol: float, atol: float) -> bool:
    """``value`` is within ``rtol`` (relative to ``expected``) or ``atol`` of ``expected``."""
    diff = abs(value - expected)
    return diff <= atol or diff <= rtol * abs(expected)


def judge_number(
    answer: Any, expected: float, *, rtol: float, atol: float = 0.0, fraction: bool = False
) -> Verdict:
    """One number within ``rtol`` or ``atol`` of ``expected``. ``fraction``: the question asks
    for a fraction, so an answer 100 times too large is named a percentage."""
    value, expected = as_number(answer), float(expected)
    if not math.isfinite(value):
        return Verdict(False, f"your answer is {value}, not a finite number.")
    if within(value, expected, rtol, atol):
        return Verdict(True)
    if fraction and within(value, 100 * expected, rtol, 100 * atol):
        return Verdict(False, "that looks like a percentage; give a fraction (0.5, not 50).")
    if expected != 0 and value != 0 and (value > 0) != (expected > 0):
        return Verdict(False, "your answer has the wrong sign.")
    if value == 0:
        return Verdict(False, "the answer is not 0.")
    if expected == 0:
        return Verdict(False, "your answer is too large in size.")
    factor = abs(value / expected)
    which = ("too large" if factor > 1 else "too small") + (" in size" if expected < 0 else "")
    words = _factor_words(max(factor, 1 / factor))
    if "close" in words:
        words += (
            f"; the check allows a relative error of {rtol:g}: compute it, do not round or estimate"
        )
    return Verdict(False, f"your answer is {which}, {words}.")


def judge_integer(answer: Any, expected: int) -> Verdict:
    """Exactly the whole number ``expected`` (a dimension, a count)."""
    value = as_number(answer)
    if not math.isfinite(value) or value != int(value):
        return Verdict(False, f"the answer should be a whole number, not {value:g}.")
    if int(value) == int(expected):
        return Verdict(True)
    if value == 0:
        return Verdict(False, "the answer is not 0.")
    if expected == 0 or (value > 0) != (expected > 0):
        return Verdict(False, "your answer has the wrong sign." if expected else "too large.")
    factor = abs(value / expected)
    which = ("too large" if factor > 1 else "too small") + (" in size" if expected < 0 else "")
    return Verdict(False, f"your answer is {which}, {_factor_words(max(factor, 1 / factor))}.")


def judge_array(answer: Any, expected: Any, *, rtol: float, atol: float = 0.0) -> Verdict:
    """An array of ``expected``'s shape, every entry within ``rtol`` (relative to the largest
    expected entry) or ``atol``."""
    value, expected = as_array(answer), as_array(expected)
    if value.shape != expected.shape:
        return Verdict(False, f"the shape is {value.shape}; it should be {expected.shape}.")
    if not np.isfinite(value).all():
        missing = int((~np.isfinite(value)).sum())
        return Verdict(False, f"{missing} of {value.size} entries are not finite numbers.")
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    tol = atol + rtol * scale
    bad = np.abs(value - expected) > tol
    if not bad.any():
        return Verdict(True)
    e, v = expected.reshape(-1), value.reshape(-1)
    size = float(np.linalg.norm(v))
    if size == 0:
        return Verdict(False, "your array is all zeros.")
    cos = float(v @ e) / (size * float(np.linalg.norm(e)) or 1.0)
    if cos < -0.999:
        return Verdict(False, "your array points the opposite way: check the sign.")
    if cos > 0.999:
        factor = size / float(np.linalg.norm(e))
        which = "too large" if factor > 1 else "too small"
        words = _factor_words(max(factor, 1 / factor))
        return Verdict(False, f"your array points the right way but is {which}, {words}.")
    return Verdict(False, f"{int(bad.sum())} of {bad.size} entries are off (cosine {cos:.2f}).")


def judge_choice(answer: Any, correct: str, why_not: Mapping[str, str]) -> Verdict:
    """One option's letter; a wrong option gets its ``why_not`` text."""
    options = sorted({correct, *why_not})
    if not isinstance(answer, str) or answer.strip().lower() not in options:
        raise AnswerTypeError(f"{answer!r} is not an option; choose one of {', '.join(options)}.")
    choice = answer.strip().lower()
    if choice == correct:
        return Verdict(True)
    return Verdict(False, f"not ({choice}): {why_not[choice]}")
