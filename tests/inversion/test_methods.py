"""The method registry (nnspaces.inversion.methods): names, aliases, and which methods apply
to which models, checked against tables written out here by hand."""

import dataclasses

import pytest
from helpers import PAPER_ALIASES
from torch import nn

from nnspaces.inversion.methods import (
    ALIASES,
    COMPARED,
    METHODS,
    applicable,
    get_method,
    method_names,
)
from nnspaces.models import build_model

PAPER_SIX = (
    "avg-img",
    "min-img",
    "avg-min-img",
    "avg-img+training",
    "min-img+training",
    "avg-min-img+training",
)


def selu_stack():
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.SELU(), nn.Linear(3, 2))


def cnn():
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))


def test_methods_table():
    # name: (solver, preset, takes priors, box)
    expected = {
        "start": ("none", None, False, False),
        "training": ("training", "original", False, False),
        "exact": ("exact", None, False, False),
        "newton": ("newton", "newton", False, False),
        "lm": ("lm", "lm", False, False),
        "lm-box": ("lm", "lm", False, True),
        "descent": ("descent", "descent", True, False),
        "box": ("box", "box", True, True),
    }
    assert list(METHODS) == list(expected)
    for name, (solver, preset, priors, box) in expected.items():
        m = METHODS[name]
        assert (m.name, m.solver, m.preset, m.takes_priors, m.box) == (
            name,
            solver,
            preset,
            priors,
            box,
        )
        assert m.start == "avg-img" and not m.fixed_start
        assert m.iterative == (preset is not None)


def test_aliases_are_the_papers_composite_names():
    assert ALIASES == PAPER_ALIASES


@pytest.mark.parametrize("alias", PAPER_SIX)
def test_get_method_fixes_an_alias_start(alias):
    m = get_method(alias)
    start = alias.removesuffix("+training")
    base = "training" if alias.endswith("+training") else "start"
    assert m.name == alias and m.start == start and m.fixed_start
    assert m.solver == METHODS[base].solver and m.preset == METHODS[base].preset
    # the table entry itself is untouched
    assert METHODS[base].name == base and not METHODS[base].fixed_start
    assert METHODS[base].start == "avg-img"


def test_get_method_returns_the_table_entries():
    for name in METHODS:
        assert get_method(name) is METHODS[name]
    with pytest.raises(dataclasses.FrozenInstanceError):
        METHODS["box"].box = False  # type: ignore[misc]


@pytest.mark.parametrize("bad", ["magic", "Exact", "", None, 3])
def test_unknown_method_names_the_allowed_ones(bad):
    with pytest.raises(ValueError) as e:
        get_method(bad)
    assert f"unknown method {bad!r}; allowed: start, training, exact, newton" in str(e.value)
    assert "avg-min-img+training" in str(e.value)


def test_names_and_comparison_order():
    assert method_names() == (*METHODS, *PAPER_SIX)
    assert COMPARED == (*PAPER_SIX, "exact", "newton", "lm", "lm-box", "descent", "box")


def test_which_methods_apply():
    assert applicable(selu_stack()) == list(COMPARED)
    assert applicable(build_model("fcnn5")) == list(COMPARED)
    no_exact = [m for m in COMPARED if m != "exact"]
    assert applicable(cnn()) == no_exact
    # ReLU between Linear layers is not a SELU stack either
    relu = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    assert applicable(relu) == no_exact
    assert applicable(cnn(), ("box", "exact")) == ["box"]
    assert get_method("exact").applies_to(selu_stack())
    assert not get_method("exact").applies_to(cnn())
    assert all(get_method(m).applies_to(cnn()) for m in no_exact)


def test_exact_says_why_it_does_not_apply():
    with pytest.raises(ValueError, match="Linear / SELU layers only; found Conv2d"):
        METHODS["exact"].requires(cnn())
    with pytest.raises(ValueError, match="found ReLU"):
        METHODS["exact"].requires(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)))


def test_quick_steps_cap_root_finders_hardest_and_keep_the_papers_training():
    from nnspaces.inversion import PRESETS, QUICK_ROOT_STEPS, QUICK_STEPS, quick_steps

    assert QUICK_ROOT_STEPS < QUICK_STEPS
    assert quick_steps("avg-img+training") == quick_steps("training") == PRESETS["original"].steps
    assert quick_steps("descent") == quick_steps("box") == QUICK_STEPS
    for name in ("newton", "lm", "lm-box"):
        assert quick_steps(name) == min(QUICK_ROOT_STEPS, PRESETS[get_method(name).preset].steps)
    assert quick_steps("start") is None and quick_steps("exact") is None
