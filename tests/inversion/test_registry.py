"""The method registry dispatches (nnspaces.inversion.methods / .solve): a new solver is one
registered entry that invert() runs, that reaches its targets and that the registry's queries
list; registering is checked; flags, not names, decide what a method does."""

import dataclasses

import pytest
import scipy.optimize
import torch
from torch import nn

from nnspaces.data import load_dataset
from nnspaces.inversion import (
    METHODS,
    QUICK_STEPS,
    Method,
    Problem,
    Solution,
    Workspace,
    applicable,
    get_method,
    invert,
    method_names,
    quick_steps,
    register_method,
    unregister_method,
)
from nnspaces.inversion.solve import solve_lm
from nnspaces.models import build_model

BUILT_IN = ("start", "training", "exact", "newton", "lm", "lm-box", "descent", "box")


@pytest.fixture
def registry():
    """The registry as it was before the test, restored after it (entries and order)."""
    saved = dict(METHODS)
    yield METHODS
    METHODS.clear()
    METHODS.update(saved)


def lbfgsb(p: Problem) -> Solution:
    """scipy's L-BFGS-B on each class's squared relative output error, pixels in [0, 1];
    at most the preset's (or the call's) steps."""
    w = Workspace(p)
    shape = w.start.shape[1:]
    images, most = [], 0
    with w.running():
        for i in range(len(w.start)):
            ti = w.equations[i : i + 1]

            def error(v, ti=ti):
                xi = torch.from_numpy(v).to(w.dtype).view(1, *shape).requires_grad_(True)
                loss = ((w.model(xi) - ti) ** 2).sum() / (ti**2).sum()
                (g,) = torch.autograd.grad(loss, xi)
                return float(loss.detach()), g.double().flatten().cpu().numpy()

            found = scipy.optimize.minimize(
                error,
                w.start[i].clamp(0, 1).double().flatten().cpu().numpy(),
                jac=True,
                method="L-BFGS-B",
                bounds=scipy.optimize.Bounds(0.0, 1.0),
                options={"maxiter": w.steps, "ftol": 0.0, "gtol": 1e-12},
            )
            images.append(torch.from_numpy(found.x).view(shape))
            most = max(most, int(found.nit))
    p.settings["scipy"] = "L-BFGS-B"
    return Solution(torch.stack(images), steps=most)


LBFGSB = Method(
    "lbfgsb",
    "scipy L-BFGS-B",
    "scipy's L-BFGS-B on the relative output error, pixels in [0, 1]",
    solve=lbfgsb,
    preset="lm",
    box=True,
    float64=True,
)


@pytest.fixture(scope="module")
def problem():
    """An untrained fcnn1 (a SELU stack), the embedded digits, and targets inside the box:
    the float64 outputs of one real training image of each of three classes."""
    torch.manual_seed(0)
    model = build_model("fcnn1").eval()
    data = load_dataset(n_train=200, n_test=20, seed=0)
    classes = [0, 3, 7]
    x, y = data.x_train, data.y_train
    pick = torch.stack([x[(y == c).nonzero()[0, 0]] for c in classes]).double()
    with torch.no_grad():
        targets = model.double()(pick)
    model.float()
    return model, data, classes, targets


def test_a_registered_solver_runs_and_reaches_its_targets(registry, problem):
    model, data, classes, targets = problem
    calls = []

    def spy(p: Problem) -> Solution:
        calls.append(p)
        return lbfgsb(p)

    register_method(dataclasses.replace(LBFGSB, solve=spy))
    kw = dict(classes=classes, data=data, progress=False)
    r = invert(model, targets, method="lbfgsb", **kw)
    # invert ran this entry's solve, once, on the targets and start images it made
    assert len(calls) == 1 and calls[0].method.name == "lbfgsb"
    assert torch.equal(calls[0].targets, targets) and calls[0].classes == classes
    assert calls[0].start.shape == (3, 1, 28, 28)
    assert r.method == "lbfgsb" and r.settings["scipy"] == "L-BFGS-B"
    assert r.settings["dtype"] == "float64" and r.settings["steps"] == 30  # lm's preset
    assert 1 <= r.steps <= 30
    # measured by invert (a float64 forward pass of its own): every class reached its target,
    # inside the box, where the start image alone is far from it
    assert r.success.all() and (r.rel_error < 1e-6).all()
    assert r.image.min() >= 0 and r.image.max() <= 1
    assert (invert(model, targets, method="start", **kw).rel_error > 0.1).all()
    # the call's steps reach the solve: one L-BFGS-B iteration does not get there
    short = invert(model, targets, method="lbfgsb", steps=1, **kw)
    assert short.steps == 1 and not short.success.any()


def test_a_registered_solver_shows_in_the_queries(registry, problem):
    before = method_names()
    register_method(LBFGSB)
    assert method_names() == (*before[: len(METHODS) - 1], "lbfgsb", *before[len(METHODS) - 1 :])
    assert "lbfgsb" in method_names(iterative=True)
    assert "lbfgsb" in method_names(box=True, paper=False)
    assert "lbfgsb" in method_names(residual="scores")
    assert "lbfgsb" not in method_names(residual="log-odds")
    assert "lbfgsb" not in method_names(root_finder=True)
    assert "lbfgsb" not in method_names(takes_priors=True)
    assert applicable(problem[0], ("lbfgsb", "exact")) == ["lbfgsb", "exact"]
    assert quick_steps("lbfgsb") == min(QUICK_STEPS, 30)
    # it solves raw scores only: asked for log-odds equations it is refused, by its flags
    model, data, classes, _ = problem
    with pytest.raises(ValueError, match="with the methods newton, lm, lm-box, descent, box; "):
        invert(model, "probability", method="lbfgsb", residual="log-odds", data=data)
    with pytest.raises(ValueError, match=r"priors apply to methods \['descent', 'box'\]"):
        invert(model, "min-max", method="lbfgsb", data=data, priors={"tv": 1.0})
    # unregistered, it is gone and the registry is as before
    assert unregister_method("lbfgsb") is LBFGSB
    assert method_names() == before
    with pytest.raises(ValueError, match="unknown method 'lbfgsb'"):
        get_method("lbfgsb")


def test_other_tests_see_the_built_in_registry():
    # runs after the tests above registered a method: their fixture restored the registry
    assert tuple(METHODS) == BUILT_IN
    assert all(METHODS[n].name == n for n in BUILT_IN)


def test_registering_is_checked(registry):
    register_method(LBFGSB)
    with pytest.raises(ValueError, match="method 'lbfgsb' is already registered"):
        register_method(LBFGSB)
    with pytest.raises(ValueError, match="method 'lm' is already registered"):
        register_method(dataclasses.replace(LBFGSB, name="lm"))
    # an alias's name is taken too
    with pytest.raises(ValueError, match="method 'avg-img' is already registered"):
        register_method(dataclasses.replace(LBFGSB, name="avg-img"))
    with pytest.raises(ValueError, match="method 'half' has no solve"):
        Method("half", "none", "an entry without its solve")
    with pytest.raises(ValueError, match="method 'half' has no solve"):
        Method("half", "none", "a solve that is no function", solve="lbfgsb")
    with pytest.raises(ValueError, match="register_method.. takes a Method, not 'lbfgsb'"):
        register_method("lbfgsb")
    with pytest.raises(ValueError, match="unknown residual 'odds'; allowed: scores, log-odds"):
        dataclasses.replace(LBFGSB, residuals=("scores", "odds"))
    with pytest.raises(ValueError, match="unknown preset 'fast'"):
        dataclasses.replace(LBFGSB, preset="fast")
    with pytest.raises(ValueError, match="unknown registered method 'nope'; allowed: start, "):
        unregister_method("nope")
    assert tuple(METHODS) == (*BUILT_IN, "lbfgsb")  # the refused ones left no trace


def test_flags_not_names_decide_what_an_entry_does(registry):
    """A copy of ``lm`` under another name with the box flag is ``lm-box`` bit for bit, and
    one without it is ``lm``: invert asks the entry, never its name."""
    register_method(dataclasses.replace(METHODS["lm"], name="damped", box=True))
    register_method(dataclasses.replace(METHODS["lm"], name="damped-free"))
    assert get_method("damped").solve is solve_lm
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 6), nn.SELU(), nn.Linear(6, 3)).eval()
    start = torch.rand(3, 1, 4, 4)
    targets = torch.tensor([[2.0, -1.0, 0.5], [0.1, 1.5, -0.5], [-0.3, 0.2, 1.0]])
    kw = dict(start=start, progress=False)
    pairs = (("damped", "lm-box"), ("damped-free", "lm"))
    for new, old in pairs:
        a, b = invert(model, targets, method=new, **kw), invert(model, targets, method=old, **kw)
        assert torch.equal(a.image, b.image) and a.steps == b.steps
        assert a.settings == b.settings and (a.success == b.success).all()
    boxed = invert(model, targets, method="damped", **kw).image
    assert boxed.min() >= 0 and boxed.max() <= 1
    free = invert(model, targets, method="damped-free", **kw).image
    assert not torch.equal(boxed, free)


def test_the_built_in_flags_written_out():
    assert method_names(residual="log-odds") == ("newton", "lm", "lm-box", "descent", "box")
    assert method_names(residual="scores", aliases=False) == BUILT_IN
    assert method_names(root_finder=True) == ("newton", "lm", "lm-box")
    assert method_names(takes_priors=True) == ("descent", "box")
    assert method_names(polish=True) == ("descent", "box")
    assert method_names(box=True) == ("lm-box", "box")
    assert method_names(float64=True) == ("exact", "newton", "lm", "lm-box")
    assert method_names(iterative=False, aliases=False) == ("start", "exact")
    assert method_names(paper=False) == ("exact", "newton", "lm", "lm-box", "descent", "box")
    assert method_names(paper=True, aliases=False) == ("start", "training")
    assert method_names(paper=True, fixed_start=True) == (
        "avg-img",
        "min-img",
        "avg-min-img",
        "avg-img+training",
        "min-img+training",
        "avg-min-img+training",
    )
    assert method_names(iterative=True, root_finder=False, aliases=False) == (
        "training",
        "descent",
        "box",
    )


@pytest.mark.parametrize(
    "query, message",
    [
        ({"fast": True}, "unknown method flag 'fast'; allowed: iterative, takes_priors"),
        ({"solver": "lm"}, "unknown method flag 'solver'"),
        ({"box": 1}, "method flag box=1 must be True or False"),
        ({"residual": "odds"}, "unknown residual 'odds'; allowed: scores, log-odds"),
    ],
)
def test_bad_queries_name_the_allowed_ones(query, message):
    with pytest.raises(ValueError, match=message):
        method_names(**query)


def test_a_solve_that_returns_the_wrong_thing_is_a_clear_error(registry, problem):
    model, data, classes, targets = problem
    kw = dict(classes=classes, data=data, progress=False)
    register_method(Method("tuple", "none", "returns a tuple", solve=lambda p: (p.start, 0)))
    register_method(Method("half", "none", "too few", solve=lambda p: Solution(p.start[:2])))
    with pytest.raises(ValueError, match=r"method 'tuple': its solve must return a Solution .*"):
        invert(model, targets, method="tuple", **kw)
    with pytest.raises(ValueError, match=r"shape \(3, 1, 28, 28\); got Solution with images \(2,"):
        invert(model, targets, method="half", **kw)
