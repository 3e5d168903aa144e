"""One exercise of a lesson: its expected value, computed here from the notebook's state, its
check, hint and solution (the otter-grader / Kaggle ``q1.check()`` convention).

A lesson's exercise is five cells (the conventions of :mod:`.student`):

1. a markdown question, starting ``**Exercise <id>**``, tagged ``exercise``;
2. ``answer = None``: the student writes the answer here (tagged ``exercise``);
3. the teacher's solution, a code cell tagged ``solution`` (it sets ``answer``);
4. optionally the teacher's explanation, a markdown cell tagged ``solution``;
5. the check, e.g. ``ns.ex("1.1").check(answer, W=W)``: the notebook passes the values the
   expected answer is computed from (each exercise names them, :attr:`Exercise.needs`), never
   the expected answer or the expression that gives it.

``check`` prints one line and returns nothing: ``Exercise <id>: correct.``; ``... not answered
yet ...`` (``answer`` is None: the student edition, whose solutions are removed); or ``... not
yet: <what is wrong>`` with the hint, never the expected value. A wrong answer is no error, so
the notebook runs on; the lesson tests fail the teacher edition unless every check says
"correct". A correct check also tries the exercise's :attr:`Exercise.naive` guesses (0 for a
number is always one): if one passes too, it says "correct, but too easy" instead, which fails
the lesson tests the same way.

When the environment variable :data:`LOG_ENV` names a file, every check appends its id and
expected value to it (JSON lines), so that the tests can search the executed notebooks for it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .checks import (
    AnswerTypeError,
    Verdict,
    judge_array,
    judge_choice,
    judge_integer,
    judge_number,
)

#: What a check prints first; tests look for these.
CORRECT = "correct"
NOT_ANSWERED = "not answered yet"
NOT_YET = "not yet"
TOO_EASY = "correct, but too easy"
#: An environment variable naming a file where every check logs its expected value.
LOG_ENV = "NNSPACES_EXERCISE_LOG"
#: The kinds of answer, and what the student is asked to set ``answer`` to.
KINDS = {"number": "a number", "integer": "a whole number", "array": "an array",
         "choice": "one letter"}  # fmt: skip


@dataclass(frozen=True)
class Exercise:
    """An exercise: ``expected(**state)`` computes the expected answer from the values the
    check cell passes (named in ``needs``). ``kind``: a key of :data:`KINDS`. Numbers and
    arrays pass within ``rtol`` (relative) or ``atol``; ``fraction``: the answer is a fraction,
    so a percentage is named as such. A choice has ``why_not``: for every wrong letter, why.
    ``naive``: guesses that must fail, each a value or a function of the state; ``solution``:
    the teacher's code, shown by :meth:`solution` (the notebook's solution cell is the same)."""

    ident: str
    kind: str
    needs: tuple[str, ...]
    expected: Callable[..., Any]
    hint: str
    solution: str
    naive: tuple[Any, ...] = ()
    rtol: float = 1e-6
    atol: float = 0.0
    fraction: bool = False
    why_not: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(
                f"exercise {self.ident}: kind {self.kind!r} is not one of {list(KINDS)}"
            )
        if self.kind == "choice" and not self.why_not:
            raise ValueError(f"exercise {self.ident}: a choice needs why_not for its wrong options")

    def _state(self, state: Mapping[str, Any]) -> dict[str, Any]:
        missing = [n for n in self.needs if n not in state]
        extra = [n for n in state if n not in self.needs]
        if missing or extra:
            raise TypeError(
                f"exercise {self.ident}: check(answer, ...) takes "
                f"{', '.join(self.needs) or 'nothing'} by name; missing {missing}, "
                f"unexpected {extra}"
            )
        return dict(state)

    def answer_for(self, **state: Any) -> Any:
        """The expected answer, from the notebook's ``state`` (the names in :attr:`needs`)."""
        return self.expected(**self._state(state))

    def judge(self, answer: Any, expected: Any) -> Verdict:
        """``answer`` against ``expected``, by this exercise's kind and tolerances."""
        try:
            if self.kind == "number":
                return judge_number(
                    answer, expected, rtol=self.rtol, atol=self.atol, fraction=self.fraction
                )
            if self.kind == "integer":
                return judge_integer(answer, expected)
            if self.kind == "array":
                return judge_array(answer, expected, rtol=self.rtol, atol=self.atol)
            why_not = {k: v for k, v in self.why_not.items() if k != expected}
            return judge_choice(answer, expected, why_not)
        except AnswerTypeError as error:
            return Verdict(False, str(error))

    def naive_guesses(self, **state: Any) -> list[Any]:
        """The guesses that must fail: 0 for a number, and :attr:`naive`, evaluated."""
        state = self._state(state)
        zero = [0] if self.kind in ("number", "integer") else []
        return zero + [g(**state) if callable(g) else g for g in self.naive]

    def passing_guesses(self, expected: Any, **state: Any) -> list[Any]:
        """The naive guesses that the check would accept (none, for a good exercise)."""
        return [g for g in self.naive_guesses(**state) if self.judge(g, expected).correct]

    def feedback(self, answer: Any, **state: Any) -> str:
        """The line :meth:`check` prints."""
        head = f"Exercise {self.ident}"
        if answer is None:
            return f"{head}: {NOT_ANSWERED}: set `answer` to {KINDS[self.kind]} in the cell above."
        expected = self.answer_for(**state)
        _log(self.ident, expected)
        verdict = self.judge(answer, expected)
        if not verdict.correct:
            hint = f" Hint: {self.hint}" if self.hint else ""
            return f"{head}: {NOT_YET}: {verdict.message}{hint}"
        easy = self.passing_guesses(expected, **state)
        if easy:
            return f"{head}: {TOO_EASY}: {len(easy)} naive guess(es) pass the check as well."
        return f"{head}: {CORRECT}."

    def check(self, answer: Any, **state: Any) -> None:
        """Print whether ``answer`` is right; ``state``: the values named in :attr:`needs`."""
        print(self.feedback(answer, **state))

    def show_hint(self) -> None:
        """Print the hint."""
        print(f"Exercise {self.ident}, hint: {self.hint}")

    def show_solution(self) -> None:
        """Print the teacher's solution code."""
        print(f"Exercise {self.ident}, a solution:\n{self.solution}")


class LessonExercise:
    """What ``ns.ex(id)`` returns: ``.check(answer, **state)``, ``.hint()``, ``.solution()``."""

    def __init__(self, exercise: Exercise) -> None:
        self.exercise = exercise

    def check(self, answer: Any, **state: Any) -> None:
        """Print whether ``answer`` is right (see :meth:`Exercise.check`)."""
        self.exercise.check(answer, **state)

    def hint(self) -> None:
        """Print the hint."""
        self.exercise.show_hint()

    def solution(self) -> None:
        """Print the teacher's solution."""
        self.exercise.show_solution()

    def __repr__(self) -> str:
        return f"exercise {self.exercise.ident}: .check(answer, ...), .hint(), .solution()"


def _log(ident: str, expected: Any) -> None:
    """Append ``{"id", "expected"}`` to the file named by :data:`LOG_ENV`, if it is set."""
    path = os.environ.get(LOG_ENV, "")
    if not path:
        return
    if hasattr(expected, "detach"):
        expected = expected.detach().cpu().numpy()
    if isinstance(expected, (np.ndarray, np.generic)):
        expected = np.asarray(expected).tolist()
    with open(path, "a", encoding="utf-8") as log:
        log.write(json.dumps({"id": ident, "expected": expected}) + "\n")
