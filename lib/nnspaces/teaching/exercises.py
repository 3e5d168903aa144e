"""Checks for the lessons' exercises: each tells the student what is wrong, in words.

Every exercise in a notebook is the same five cells (the conventions of :mod:`.student`):

1. a markdown question, starting ``**Exercise <id>**``;
2. ``answer = None``: the student writes the answer here;
3. the teacher's solution, a code cell tagged ``solution`` (it sets ``answer``);
4. optionally the teacher's explanation, a markdown cell tagged ``solution``;
5. one check from this module, e.g. ``check_number("1.1", answer, expected, rtol=1e-6)``,
   where ``expected`` is computed by the notebook (or the library) independently of the answer.

A check prints ``Exercise <id>: correct ...`` and returns True; for an unanswered exercise
(``answer`` still None: the student edition, where solutions are removed) it prints
``Exercise <id>: not answered yet ...`` and returns False, so the notebook runs on to the next
exercise; a wrong answer raises :class:`ExerciseError` with a message that says what is wrong
(the value expected or the kind of mistake, and the hint).
"""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Real
from typing import Any

import numpy as np

#: What each check prints first; tests look for these.
CORRECT = "correct"
NOT_ANSWERED = "not answered yet"


class ExerciseError(ValueError):
    """A wrong answer to an exercise; the message says what is wrong."""


def _unanswered(exercise: str, what: str) -> bool:
    print(f"Exercise {exercise}: {NOT_ANSWERED}: set `answer` to {what} in the cell above.")
    return False


def _correct(exercise: str, note: str = "") -> bool:
    print(f"Exercise {exercise}: {CORRECT}." + (f" {note}" if note else ""))
    return True


def _wrong(exercise: str, message: str, hint: str) -> ExerciseError:
    return ExerciseError(f"Exercise {exercise}: {message}" + (f" Hint: {hint}" if hint else ""))


def _as_number(exercise: str, answer: Any, hint: str) -> float:
    if isinstance(answer, bool) or not isinstance(answer, (Real, np.number)):
        if isinstance(answer, np.ndarray) and answer.size == 1:
            return float(answer.item())
        if hasattr(answer, "numel") and answer.numel() == 1:
            return float(answer.item())  # a one-element torch tensor
        kind = type(answer).__name__
        raise _wrong(exercise, f"the answer should be one number, got {kind}.", hint)
    return float(answer)


def check_number(
    exercise: str,
    answer: Any,
    expected: float,
    *,
    rtol: float = 1e-6,
    atol: float = 0.0,
    hint: str = "",
) -> bool:
    """``answer`` is one number within ``rtol`` (relative) or ``atol`` of ``expected``."""
    if answer is None:
        return _unanswered(exercise, "a number")
    value = _as_number(exercise, answer, hint)
    expected = float(expected)
    if not np.isfinite(value):
        raise _wrong(exercise, f"your answer is {value}, not a finite number.", hint)
    diff = abs(value - expected)
    if diff <= atol or diff <= rtol * abs(expected):
        return _correct(exercise, f"({value:.6g}; expected {expected:.6g})")
    rel = diff / abs(expected) if expected else float("inf")
    raise _wrong(
        exercise,
        f"your answer {value:.6g} is not {expected:.6g} "
        f"(off by {rel:.2g} relative; allowed {rtol:g}).",
        hint,
    )


def check_integer(exercise: str, answer: Any, expected: int, *, hint: str = "") -> bool:
    """``answer`` is exactly the integer ``expected`` (a dimension, a count)."""
    if answer is None:
        return _unanswered(exercise, "a whole number")
    value = _as_number(exercise, answer, hint)
    if value != int(value):
        raise _wrong(exercise, f"the answer should be a whole number, got {value:g}.", hint)
    if int(value) != int(expected):
        direction = "too large" if value > expected else "too small"
        raise _wrong(exercise, f"your answer {int(value)} is {direction}.", hint)
    return _correct(exercise, f"({int(value)})")


def check_array(
    exercise: str,
    answer: Any,
    expected: Any,
    *,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    hint: str = "",
) -> bool:
    """``answer`` is an array of ``expected``'s shape, equal to it within the tolerances."""
    if answer is None:
        return _unanswered(exercise, "an array")
    if hasattr(answer, "detach"):
        answer = answer.detach().cpu().numpy()
    if hasattr(expected, "detach"):
        expected = expected.detach().cpu().numpy()
    value, expected = np.asarray(answer, dtype=float), np.asarray(expected, dtype=float)
    if value.shape != expected.shape:
        raise _wrong(exercise, f"the shape is {value.shape}; it should be {expected.shape}.", hint)
    bad = ~np.isclose(value, expected, rtol=rtol, atol=atol)
    if bad.any():
        i = np.unravel_index(int(np.argmax(bad)), bad.shape)
        raise _wrong(
            exercise,
            f"{int(bad.sum())} of {bad.size} entries differ; e.g. at index {tuple(map(int, i))} "
            f"yours is {value[i]:.6g}, expected {expected[i]:.6g}.",
            hint,
        )
    return _correct(exercise, f"(all {value.size} entries)")


def check_choice(
    exercise: str, answer: Any, correct: str, why_not: Mapping[str, str], *, hint: str = ""
) -> bool:
    """A multiple-choice answer: ``answer`` is one option's letter; ``why_not`` says, for every
    wrong option, why it is wrong (that is the feedback the student gets)."""
    options = sorted({correct, *why_not})
    if answer is None:
        return _unanswered(exercise, f"one of {', '.join(repr(o) for o in options)}")
    choice = str(answer).strip().lower()
    if choice not in options:
        raise _wrong(
            exercise, f"{answer!r} is not an option; choose one of {', '.join(options)}.", hint
        )
    if choice != correct:
        raise _wrong(exercise, f"not ({choice}): {why_not[choice]}", hint)
    return _correct(exercise)
