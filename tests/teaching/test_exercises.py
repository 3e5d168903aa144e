"""The exercise checks: unanswered prints and goes on, right passes, wrong says what is wrong."""

import numpy as np
import pytest
import torch

from nnspaces.teaching.exercises import (
    CORRECT,
    NOT_ANSWERED,
    ExerciseError,
    check_array,
    check_choice,
    check_integer,
    check_number,
)


@pytest.mark.parametrize(
    "check",
    [
        lambda a: check_number("1.1", a, 2.0),
        lambda a: check_integer("1.2", a, 774),
        lambda a: check_array("1.3", a, np.zeros(3)),
        lambda a: check_choice("1.4", a, "b", {"a": "no", "c": "no"}),
    ],
)
def test_unanswered_prints_and_returns_false(check, capsys):
    assert check(None) is False
    out = capsys.readouterr().out
    assert NOT_ANSWERED in out and "Exercise 1." in out and "answer" in out


def test_number_within_and_outside_tolerance(capsys):
    assert check_number("2.1", 1.0 + 5e-7, 1.0, rtol=1e-6) is True
    assert CORRECT in capsys.readouterr().out
    wrong = r"Exercise 2.1: your answer 1.00001 is not 1 .*Hint: x$"
    with pytest.raises(ExerciseError, match=wrong):
        check_number("2.1", 1.00001, 1.0, rtol=1e-6, hint="x")
    assert check_number("2.2", 1e-12, 0.0, atol=1e-9)  # zero expected: atol decides
    with pytest.raises(ExerciseError, match="off by inf relative"):
        check_number("2.2", 1e-3, 0.0, atol=1e-9)
    # a relative tolerance is relative to the expected value, not absolute
    with pytest.raises(ExerciseError):
        check_number("2.3", 1000.5, 1000.0, rtol=1e-4)
    assert check_number("2.3", 1000.05, 1000.0, rtol=1e-4)


def test_number_accepts_numpy_and_one_element_tensors_but_names_wrong_types():
    assert check_number("3.1", np.float32(2.0), 2.0)
    assert check_number("3.1", torch.tensor([2.0]), 2.0)
    assert check_number("3.1", np.array([2.0]), 2.0)
    with pytest.raises(ExerciseError, match="one number, got list"):
        check_number("3.1", [2.0, 3.0], 2.0)
    with pytest.raises(ExerciseError, match="one number, got bool"):
        check_number("3.1", True, 1.0)
    with pytest.raises(ExerciseError, match="not a finite number"):
        check_number("3.1", float("nan"), 1.0)


def test_integer_says_too_large_or_small():
    assert check_integer("4.1", 774, 774) and check_integer("4.1", 774.0, 774)
    with pytest.raises(ExerciseError, match="775 is too large"):
        check_integer("4.1", 775, 774)
    with pytest.raises(ExerciseError, match="10 is too small"):
        check_integer("4.1", 10, 774)
    with pytest.raises(ExerciseError, match="whole number, got 774.5"):
        check_integer("4.1", 774.5, 774)


def test_array_shape_and_first_bad_entry():
    x = np.arange(6.0).reshape(2, 3)
    assert check_array("5.1", torch.from_numpy(x), x)
    with pytest.raises(ExerciseError, match=r"shape is \(3, 2\); it should be \(2, 3\)"):
        check_array("5.1", x.T, x)
    y = x.copy()
    y[1, 2] += 1
    with pytest.raises(ExerciseError, match=r"1 of 6 entries differ; e.g. at index \(1, 2\)"):
        check_array("5.1", y, x)


def test_choice_explains_the_wrong_option():
    why = {"a": "a square layer can still lose nothing only if invertible", "c": "no"}
    assert check_choice("6.1", " B ", "b", why)
    with pytest.raises(ExerciseError, match="not \\(a\\): a square layer"):
        check_choice("6.1", "a", "b", why)
    with pytest.raises(ExerciseError, match="'d' is not an option; choose one of a, b, c"):
        check_choice("6.1", "d", "b", why)
