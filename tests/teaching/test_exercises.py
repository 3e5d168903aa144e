"""The exercises: a check says right, not answered or what kind of mistake, never the expected
value; every registered exercise is well formed; the ones that need no state are solved by
their own solution and not by their naive guesses."""

import json
import re

import numpy as np
import pytest
import torch

from nnspaces.teaching.checks import judge_array, judge_choice, judge_integer, judge_number
from nnspaces.teaching.exercise import (
    CORRECT,
    LOG_ENV,
    NOT_ANSWERED,
    NOT_YET,
    TOO_EASY,
    Exercise,
)
from nnspaces.teaching.exercises import EXERCISES, ex


def _reveals(message: str, expected: float) -> bool:
    """Whether ``message`` shows ``expected`` to 2 or more significant digits."""
    shown = {f"{expected:.{d}g}" for d in range(2, 8)} | {f"{expected:.{d}f}" for d in (1, 2, 3)}
    shown |= {f"{100 * expected:.{d}g}" for d in range(2, 5)}
    return any(re.search(rf"(?<![\d.]){re.escape(s)}(?!\d)", message) for s in shown)


EXPECTED = 0.0127551  # a fraction, as in exercise 1.4


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (0.127551, "too large, by about a factor of 10."),
        (0.00127551, "too small, by about a factor of 10."),
        (12.7551, "too large, by about a factor of 1,000."),
        (1.27551, "percentage"),  # 100 times the fraction, when a fraction is asked
        (0.03, "too large, by about a factor of 2."),
        (0.0150, "too large, by 10% to 50%."),
        (0.0127, "too small, but close (within 10%)"),
        (-0.0127551, "wrong sign"),
        (0, "not 0"),
        (float("nan"), "not a finite number"),
        ([0.01, 0.02], "one number, not a list"),
        (True, "not True or False"),
    ],
)
def test_a_wrong_number_says_which_way_and_how_far_but_not_the_value(answer, words):
    from nnspaces.teaching.checks import AnswerTypeError

    try:
        verdict = judge_number(answer, EXPECTED, rtol=1e-3, fraction=True)
    except AnswerTypeError as error:
        verdict_message = str(error)
    else:
        assert not verdict.correct
        verdict_message = verdict.message
    assert words in verdict_message
    assert not _reveals(verdict_message, EXPECTED), verdict_message


def test_a_number_passes_within_its_tolerance_only():
    assert judge_number(EXPECTED * (1 + 9e-4), EXPECTED, rtol=1e-3).correct
    assert not judge_number(EXPECTED * (1 + 1.1e-3), EXPECTED, rtol=1e-3).correct
    # relative to the expected value: 1000.5 is not within 1e-4 of 1000
    assert not judge_number(1000.5, 1000.0, rtol=1e-4).correct
    assert judge_number(1000.05, 1000.0, rtol=1e-4).correct
    # a percentage is named only where a fraction was asked
    assert "percentage" not in judge_number(1.27551, EXPECTED, rtol=1e-3).message
    # numpy numbers and one-element tensors are numbers
    assert judge_number(np.float32(2.0), 2.0, rtol=1e-6).correct
    assert judge_number(torch.tensor([2.0]), 2.0, rtol=1e-6).correct
    # a negative expected value: "too large in size", not a sign error
    assert "too large in size" in judge_number(-3.0, -1.0, rtol=1e-6).message


def test_an_integer_must_be_exact_and_says_which_way():
    assert judge_integer(774, 774).correct and judge_integer(774.0, 774).correct
    assert judge_integer(775, 774).message == "your answer is too large, but close (within 10%)."
    assert "too small, by about a factor of 10" in judge_integer(77, 774).message
    assert "whole number, not 774.5" in judge_integer(774.5, 774).message
    assert not _reveals(judge_integer(10, 774).message, 774)


def test_an_array_says_shape_sign_scale_or_how_many_entries():
    x = np.arange(1.0, 7.0).reshape(2, 3)
    assert judge_array(torch.from_numpy(x), x, rtol=1e-9).correct
    assert "shape is (3, 2); it should be (2, 3)" in judge_array(x.T, x, rtol=1e-9).message
    assert "opposite way" in judge_array(-x, x, rtol=1e-9).message
    assert (
        "right way but is too small, by about a factor of 10"
        in judge_array(x * 1e-1, x, rtol=1e-9).message
    )
    y = x.copy()
    y[1, 2] = -40.0
    message = judge_array(y, x, rtol=1e-9).message
    assert message.startswith("1 of 6 entries are off") and "6" not in message.split("(")[0][-3:]
    assert "not finite" in judge_array(np.full((2, 3), np.nan), x, rtol=1e-9).message


def test_a_choice_explains_the_wrong_option():
    why = {"a": "a square layer can still be singular", "c": "no"}
    assert judge_choice(" B ", "b", why).correct
    assert judge_choice("a", "b", why).message == "not (a): a square layer can still be singular"
    from nnspaces.teaching.checks import AnswerTypeError

    with pytest.raises(AnswerTypeError, match="'d' is not an option; choose one of a, b, c"):
        judge_choice("d", "b", why)


def _toy(**kw) -> Exercise:
    base = dict(
        ident="9.1", kind="number", needs=("x",), expected=lambda x: 2.5 * x, hint="double it",
        solution="answer = 2.5 * x",
    )  # fmt: skip
    return Exercise(**(base | kw))


def test_check_prints_one_line_and_never_raises_on_a_wrong_answer(capsys):
    exercise = _toy()
    exercise.check(None, x=3.0)
    exercise.check(7.5, x=3.0)
    exercise.check(100.0, x=3.0)
    exercise.check("ten", x=3.0)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"Exercise 9.1: {NOT_ANSWERED}: set `answer` to a number")
    assert lines[1] == f"Exercise 9.1: {CORRECT}."
    assert lines[2].startswith(f"Exercise 9.1: {NOT_YET}: your answer is too large, by about a")
    assert lines[2].endswith("Hint: double it") and not _reveals(lines[2], 7.5)
    assert lines[3].startswith(f"Exercise 9.1: {NOT_YET}: the answer should be one number")
    assert exercise.check(7.5, x=3.0) is None  # no "Out: True" under the cell


def test_a_check_whose_naive_guess_passes_is_too_easy():
    """The guard against loose tolerances: the naive guess 1 passes a 10% check of 1.05."""
    loose = _toy(expected=lambda x: 1.05, rtol=0.1, naive=(1.0,))
    assert loose.feedback(1.05, x=0.0).startswith(f"Exercise 9.1: {TOO_EASY}")
    tight = _toy(expected=lambda x: 1.05, rtol=1e-3, naive=(1.0, lambda x: x))
    assert tight.feedback(1.05, x=0.0) == f"Exercise 9.1: {CORRECT}."
    # 0 is always a naive guess of a number: an exercise answered by 0 is too easy
    zero = _toy(expected=lambda x: 0.0, atol=1e-9)
    assert TOO_EASY in zero.feedback(0.0, x=1.0)


def test_state_is_checked_by_name():
    with pytest.raises(TypeError, match=r"takes x by name; missing \['x'\], unexpected \['y'\]"):
        _toy().check(1.0, y=2.0)
    with pytest.raises(ValueError, match="kind 'words' is not one of"):
        _toy(kind="words")
    with pytest.raises(KeyError, match="no exercise '9.9'; the exercises are 1.1, 1.2"):
        ex("9.9")


def test_every_check_logs_its_expected_value_when_asked(tmp_path, monkeypatch):
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv(LOG_ENV, str(log))
    _toy().check(1.0, x=np.float64(4.0))
    _toy(kind="array", expected=lambda x: np.arange(3) * x).check(None, x=1.0)  # unanswered
    assert [json.loads(line) for line in log.read_text().splitlines()] == [
        {"id": "9.1", "expected": 10.0}
    ]


def test_the_registry_has_three_exercises_per_lesson_each_well_formed():
    ids = list(EXERCISES)
    lessons = sorted({i.split(".")[0] for i in ids})
    assert lessons == [str(n) for n in range(1, 7)]
    for lesson in lessons:
        mine = [i for i in ids if i.split(".")[0] == lesson]
        assert mine == [f"{lesson}.{k}" for k in range(1, len(mine) + 1)] and len(mine) >= 3
    for e in EXERCISES.values():
        assert e.hint and "answer = " in e.solution, e.ident
        assert e.naive or e.kind == "choice", f"{e.ident} lists no naive guess"
        if e.kind == "choice":
            assert e.expected() not in e.why_not or len(e.why_not) >= 2, e.ident


@pytest.mark.parametrize("ident", [i for i, e in EXERCISES.items() if not e.needs])
def test_stateless_exercises_are_solved_by_their_solution_not_by_a_guess(ident):
    exercise = EXERCISES[ident]
    namespace = {"np": np, "torch": torch}
    exec(exercise.solution, namespace)
    expected = exercise.answer_for()
    assert exercise.judge(namespace["answer"], expected).correct
    assert exercise.passing_guesses(expected) == []
    if exercise.kind == "choice":
        for wrong in exercise.why_not:
            assert not exercise.judge(wrong, expected).correct
