"""The dispatcher nnspaces.inversion.invert: argument errors that name the bad value, aliases
that equal their method with their start, start images independent of the solver, options and
overrides, priors only where a method takes them, and a caller's model left as it was."""

import dataclasses

import numpy as np
import pytest
import torch
from helpers import PAPER_ALIASES, selu_net
from torch import nn

from nnspaces.data import Dataset
from nnspaces.inversion import (
    ALIASES,
    PRESETS,
    InvertOptions,
    ScoreStats,
    invert,
    make_targets,
)
from nnspaces.inversion.priors import total_variation
from nnspaces.models import build_model


def toy_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).eval()


def toy_xy():
    """Six 2x2 images per class for three classes."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(18, 1, 2, 2, generator=g)
    y = torch.arange(18) % 3
    return x, y


def toy_dataset():
    x, y = toy_xy()
    return Dataset("toy", x, y, x[:0], y[:0], x[:3], y[:3], "hand-made")


def hand_outputs(model, x):
    with torch.no_grad():
        return model(x).double()


def hand_targets(model, x, classes):
    """min-max targets worked out directly: min of every output, max of output c."""
    out = hand_outputs(model, x)
    lo, hi = out.min(0).values, out.max(0).values
    t = lo.repeat(len(classes), 1)
    for i, c in enumerate(classes):
        t[i, c] = hi[c]
    return t


def hand_start(kind, model, x, y, classes, fraction=0.25):
    """The start images of :data:`STARTS` worked out directly."""
    t = hand_targets(model, x, classes)
    out = hand_outputs(model, x)
    rows = []
    for i, c in enumerate(classes):
        idx = [j for j in range(len(y)) if y[j] == c]
        if kind == "avg-img":
            rows.append(x[idx].mean(0))
            continue
        err = [float(((out[j] - t[i]) ** 2).mean()) for j in idx]
        order = [idx[k] for k in np.argsort(err, kind="stable")]
        k = 1 if kind == "min-img" else int(np.ceil(fraction * len(idx)))
        rows.append(x[order[:k]].mean(0))
    return torch.stack(rows)


# ----------------------------------------------------------------------------- bad input


@pytest.fixture
def fcnn1_like():
    return selu_net((784, 10), selu_last=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "magic"}, "unknown method 'magic'; allowed: start, training, exact"),
        ({"method": "exact", "network": 5}, "network=5 must be a name (a string) or None"),
        ({"method": "exact", "classes": [10]}, "class 10 is out of range; allowed: 0..9"),
        ({"method": "exact", "priors": {"blur": 1.0}}, "unknown prior 'blur'; allowed: tv"),
        ({"method": "box", "steps": 0}, "steps=0 must be an integer >= 1"),
        ({"method": "exact", "start": "mean-img"}, "unknown start 'mean-img'; allowed: avg-img"),
        ({"method": "exact", "hidden": "prior"}, "unknown hidden 'prior'; allowed: auto, walk"),
        ({"method": "box", "preset": "fast"}, "unknown preset 'fast'; allowed: original"),
        ({"method": "box", "lr": 0.0}, "lr=0.0 must be a finite number > 0"),
        ({"method": "box", "lr": float("inf")}, "lr=inf must be a finite number > 0"),
        ({"method": "box", "tol": -1e-4}, "tol=-0.0001 must be a number > 0"),
        ({"method": "box", "percentiles": (75, 25)}, "must satisfy 0 <= low < high <= 100"),
        ({"method": "box", "fraction": 0.0}, "fraction=0.0 must be in (0, 1]"),
        ({"method": "box", "margin": 0.0}, "margin=0.0 must be > 0"),
        ({"method": "box", "callback_every": 0}, "callback_every=0 must be an integer >= 1"),
    ],
)
def test_bad_arguments_name_the_value(fcnn1_like, kwargs, message):
    kwargs = {"targets": torch.zeros(1 if "classes" in kwargs else 10, 10)} | kwargs
    with pytest.raises(ValueError) as e:
        invert(
            fcnn1_like, start=kwargs.pop("start", torch.zeros(10, 784)), progress=False, **kwargs
        )
    assert message in str(e.value)


def test_unknown_override_is_a_type_error_naming_the_allowed_ones(fcnn1_like):
    with pytest.raises(TypeError) as e:
        invert(fcnn1_like, torch.zeros(10, 10), method="box", step=3, progress=False)
    allowed = [f.name for f in dataclasses.fields(InvertOptions)]
    assert "unknown options ['step']" in str(e.value)
    assert "allowed: " + ", ".join(allowed) in str(e.value)
    assert allowed == [
        "preset",
        "steps",
        "lr",
        "tol",
        "level",
        "residual",
        "percentiles",
        "fraction",
        "margin",
        "hidden",
        "callback_every",
        "specialise",
        "polish",
    ]


def test_bad_targets_name_the_value(fcnn1_like):
    start = torch.zeros(10, 784)
    with pytest.raises(ValueError, match="target of length 9 .*expected 10 values"):
        invert(fcnn1_like, torch.zeros(10, 9), method="exact", start=start, progress=False)
    low = torch.zeros(10, 10)
    low[3, 4] = -2.0
    with pytest.raises(ValueError, match=r"target value -2 is below SELU's lower bound -1\.758"):
        invert(fcnn1_like, low, method="exact", start=start, progress=False)
    with pytest.raises(ValueError, match="unknown target 'max'; allowed: min-max, percentile"):
        invert(fcnn1_like, "max", method="exact", start=start, progress=False)
    with pytest.raises(ValueError, match="3 start images for 10 classes"):
        invert(fcnn1_like, torch.zeros(10, 10), method="exact", start=start[:3], progress=False)


def test_names_need_data():
    model = toy_model()
    with pytest.raises(ValueError, match="needs data=Dataset or"):
        invert(model, "min-max", method="start", start=torch.zeros(3, 1, 2, 2), progress=False)
    with pytest.raises(ValueError, match="needs data=Dataset or"):
        invert(model, torch.zeros(3, 3), method="exact", progress=False)  # default start avg-img
    with pytest.raises(ValueError, match="needs data=Dataset or"):
        invert(
            model,
            torch.zeros(3, 3),
            method="descent",
            start=torch.zeros(3, 1, 2, 2),
            priors={"l2-avg": 1.0},
            progress=False,
        )


# ----------------------------------------------------------------------------- aliases, starts


def test_aliases_are_the_papers_six():
    assert set(ALIASES) == set(PAPER_ALIASES)


@pytest.mark.parametrize(("alias", "base", "start"), [(k, *v) for k, v in PAPER_ALIASES.items()])
def test_alias_equals_its_method_from_its_start(alias, base, start):
    model, (x, y) = toy_model(), toy_xy()
    kw = dict(data=(x, y), progress=False)
    a = invert(model, "min-max", method=alias, **kw)
    b = invert(model, "min-max", method=base, start=start, **kw)
    assert torch.equal(a.image, b.image) and torch.equal(a.start, b.start)
    assert a.method == alias and b.method == base
    assert a.settings["start"] == start
    # the start is the one its name says, worked out by hand
    assert torch.allclose(a.start, hand_start(start, model, x, y, [0, 1, 2]), atol=1e-6)
    assert torch.allclose(a.target, hand_targets(model, x, [0, 1, 2]), atol=1e-6)
    if base == "start":
        assert torch.equal(a.image, a.start)
    else:
        assert a.steps == 100 and not torch.equal(a.image, a.start)


def test_alias_refuses_another_start():
    model, xy = toy_model(), toy_xy()
    with pytest.raises(ValueError, match="method 'min-img' names its start image; do not pass"):
        invert(model, "min-max", method="min-img", start="avg-img", data=xy, progress=False)
    with pytest.raises(ValueError, match="names its start image"):
        invert(
            model,
            "min-max",
            method="avg-img+training",
            start=torch.zeros(3, 1, 2, 2),
            data=xy,
            progress=False,
        )


@pytest.mark.parametrize(
    ("method", "start"), [("descent", "min-img"), ("exact", "avg-min-img"), ("box", "avg-img")]
)
def test_start_is_independent_of_the_solver(method, start):
    model, (x, y) = toy_model(), toy_xy()
    r = invert(
        model,
        "min-max",
        method=method,
        start=start,
        data=toy_dataset(),
        classes=[2, 0],
        fraction=0.5,
        steps=5,
        progress=False,
    )
    expected = hand_start(start, model, x, y, [2, 0], fraction=0.5)
    assert torch.allclose(r.start, expected, atol=1e-6)
    assert r.settings["start"] == start and r.method == method


def test_given_start_images_are_used_as_they_are():
    model = toy_model()
    start = torch.rand(3, 1, 2, 2)
    r = invert(model, torch.zeros(3, 3), method="start", start=start, progress=False)
    assert torch.equal(r.image, start) and torch.equal(r.start, start)
    assert r.settings["start"] == "given"


def test_noise_start_is_seeded():
    model, xy = toy_model(), toy_xy()
    kw = dict(method="start", start="avg-img+noise", data=xy, progress=False)
    a, b = invert(model, "min-max", seed=1, **kw), invert(model, "min-max", seed=1, **kw)
    c = invert(model, "min-max", seed=2, **kw)
    assert torch.equal(a.image, b.image) and not torch.equal(a.image, c.image)
    assert a.settings["seed"] == 1


# ----------------------------------------------------------------------------- targets, classes


def test_named_targets_follow_the_classes():
    model, (x, y) = toy_model(), toy_xy()
    r = invert(model, "min-max", method="start", data=(x, y), classes=[2, 0], progress=False)
    assert r.classes == [2, 0]
    assert torch.allclose(r.target, hand_targets(model, x, [2, 0]), atol=1e-6)
    one = invert(model, "min-max", method="start", data=(x, y), classes=1, progress=False)
    assert one.classes == [1]
    assert torch.allclose(one.target, hand_targets(model, x, [1]), atol=1e-6)


def test_given_stats_are_used_and_percentiles_passed_on():
    model, (x, y) = toy_model(), toy_xy()
    # made-up statistics: targets must come from them, not from the model
    out = torch.arange(18 * 3, dtype=torch.float64).reshape(18, 3) % 7
    stats = ScoreStats(out, y)
    r = invert(model, "min-max", method="start", data=(x, y), stats=stats, progress=False)
    assert torch.equal(r.target, make_targets(stats, "min-max"))
    p = invert(
        model,
        "percentile",
        method="start",
        data=(x, y),
        stats=stats,
        percentiles=(10, 90),
        progress=False,
    )
    lo = torch.from_numpy(np.percentile(out.numpy(), 10, axis=0))
    hi = torch.from_numpy(np.percentile(out.numpy(), 90, axis=0))
    expected = lo.repeat(3, 1)
    expected[range(3), range(3)] = hi
    assert torch.allclose(p.target, expected)


# ----------------------------------------------------------------------------- options


def test_options_and_overrides():
    model, xy = toy_model(), toy_xy()
    kw = dict(data=xy, progress=False)
    by_options = invert(model, "min-max", method="descent", options=InvertOptions(steps=7), **kw)
    by_keyword = invert(model, "min-max", method="descent", steps=7, **kw)
    assert torch.equal(by_options.image, by_keyword.image)
    assert by_options.settings["steps"] == 7 and by_options.steps <= 7
    # keywords win over options
    r = invert(model, "min-max", method="descent", options=InvertOptions(steps=7), steps=3, **kw)
    assert r.settings["steps"] == 3 and r.steps <= 3
    # defaults: the method's own preset
    d = invert(model, "min-max", method="avg-img+training", **kw)
    orig = PRESETS["original"]
    assert (d.settings["optimizer"], d.settings["lr"], d.settings["steps"]) == (
        orig.optimizer,
        orig.lr,
        orig.steps,
    )
    # another preset, and lr on top of it
    p = invert(model, "min-max", method="descent", preset="original", lr=1e-3, steps=2, **kw)
    assert (p.settings["optimizer"], p.settings["lr"], p.settings["steps"]) == ("sgd", 1e-3, 2)
    assert p.settings["lr_final"] is None
    desc = invert(model, "min-max", method="descent", steps=2, **kw)
    assert desc.settings["lr"] == PRESETS["descent"].lr
    assert desc.settings["lr_final"] == PRESETS["descent"].lr_final


def test_tol_decides_success():
    model, xy = toy_model(), toy_xy()
    r = invert(model, "min-max", method="exact", data=xy, progress=False)
    assert r.success.all() and r.rel_error.max() < 1e-6
    tight = invert(model, "min-max", method="exact", data=xy, tol=1e-20, progress=False)
    assert not tight.success.any()


def test_callback_can_stop_a_run():
    model, xy = toy_model(), toy_xy()
    seen = []

    def stop(step, med):
        seen.append(step)
        return False

    r = invert(model, "min-max", method="descent", data=xy, callback=stop, progress=False)
    assert seen == [0] and r.steps == 1


# ----------------------------------------------------------------------------- priors


@pytest.mark.parametrize("method", ["start", "training", "exact", "newton", "min-img"])
def test_priors_only_for_methods_that_take_them(method):
    model, xy = toy_model(), toy_xy()
    with pytest.raises(ValueError) as e:
        invert(model, "min-max", method=method, data=xy, priors={"tv": 0.1}, progress=False)
    assert str(e.value) == f"priors apply to methods ['descent', 'box'], not {method!r}"
    # a zero weight is no prior at all
    r = invert(model, "min-max", method=method, data=xy, priors={"tv": 0.0}, progress=False)
    assert r.settings["priors"] == {}


def test_bn_prior_needs_batchnorm():
    model, xy = toy_model(), toy_xy()
    with pytest.raises(ValueError, match="prior 'bn' .* does not apply to Sequential"):
        invert(model, "min-max", method="descent", data=xy, priors={"bn": 1.0}, progress=False)


def test_l2_avg_prior_pulls_each_class_to_its_own_average():
    model, (x, y) = toy_model(), toy_xy()
    r = invert(
        model,
        "min-max",
        method="descent",
        start=torch.zeros(2, 1, 2, 2),
        classes=[2, 0],
        data=(x, y),
        priors={"l2-avg": 1e4},
        steps=300,
        progress=False,
    )
    avg = torch.stack([x[y == 2].mean(0), x[y == 0].mean(0)])
    assert torch.allclose(r.image, avg, atol=0.02)
    assert r.settings["priors"] == {"l2-avg": 1e4}


def test_tv_prior_smooths():
    model, xy = toy_model(), toy_xy()
    kw = dict(method="box", data=xy, steps=200, progress=False)
    plain = invert(model, "min-max", **kw)
    smooth = invert(model, "min-max", priors={"tv": 10.0}, **kw)
    assert (total_variation(smooth.image) < total_variation(plain.image)).all()


# ----------------------------------------------------------------------------- the model


def small_relu_cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 3 * 3, 3)
    ).eval()


def test_training_preset_moves_little_and_restores_the_model():
    model = small_relu_cnn()
    model.train()
    flags = [p.requires_grad for p in model.parameters()]
    before = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        t = model.eval()(torch.rand(3, 1, 8, 8))
    model.train()
    start = torch.rand(3, 1, 8, 8)
    plain = invert(model, t, method="descent", start=start, steps=5, progress=False)
    assert model.training and [p.requires_grad for p in model.parameters()] == flags
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
    assert plain.image.shape == start.shape
    for v in (plain.image, plain.start, plain.output, plain.target):
        assert v.device.type == "cpu"
    assert plain.network == "Sequential"


@pytest.mark.parametrize("method", ["descent", "lm", "newton"])
def test_solvers_run_without_tf32(method):
    # on a GPU, TF32 convolutions (cuDNN's default) are off by 1e-3: more than the tolerance
    seen = []

    class Spy(nn.Module):
        def forward(self, x):
            if x.dtype == torch.float32:  # (float64 measurements are not touched by TF32)
                flags = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
                seen.append(flags)
            return x

    model = nn.Sequential(small_relu_cnn(), Spy())
    was = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = True
    try:
        with torch.no_grad():
            t = model(torch.rand(3, 1, 8, 8))
        seen.clear()
        invert(model, t, method=method, start=torch.rand(3, 1, 8, 8), steps=2, progress=False)
        assert seen and not any(a or b for a, b in seen)
        assert torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32 = was


def test_named_targets_restore_the_model():
    model, xy = toy_model(), toy_xy()
    model.train()
    invert(model, "min-max", method="start", data=xy, progress=False)
    assert model.training


def test_network_label():
    model, xy = toy_model(), toy_xy()
    kw = dict(method="start", data=xy, progress=False)
    assert invert(model, "min-max", **kw).network == "Sequential"
    assert invert(model, "min-max", network="mine", **kw).network == "mine"
    fcnn1 = build_model("fcnn1")
    r = invert(
        fcnn1,
        torch.zeros(1, 10),
        method="start",
        start=torch.zeros(1, 1, 28, 28),
        classes=[4],
        progress=False,
    )
    assert r.network == "fcnn1"


@pytest.mark.parametrize("method", ["descent", "box"])
def test_descent_and_box_hand_off_to_levenberg_marquardt(method):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        t = model(torch.rand(4, 1, 8, 8, generator=g))
    start = torch.rand(4, 1, 8, 8, generator=g)
    run = dict(method=method, start=start, progress=False, tol=1e-5)
    polished = invert(model, t, **run)
    plain = invert(model, t, **run, polish=False)
    assert polished.success.all() and plain.success.all()
    info = polished.settings["polish"]
    assert info["handoff"] == 1e-2 and info["classes"] >= 1 and info["steps"] >= 1
    assert polished.steps < plain.steps and "polish" not in plain.settings
    if method == "box":
        assert polished.image.min() >= 0 and polished.image.max() <= 1
    # a tolerance looser than the hand-off: Adam stops where it would have stopped anyway
    loose = dict(run, tol=0.1)
    assert invert(model, t, **loose).steps == invert(model, t, **loose, polish=False).steps
    # with a prior the objective is more than the outputs: Adam to the end
    primed = invert(model, t, **run, priors={"tv": 1e-6}, steps=50)
    assert "polish" not in primed.settings


def test_polish_option_must_be_a_flag():
    with pytest.raises(ValueError, match="polish='no' must be True or False"):
        invert(
            toy_model(), torch.zeros(3, 3), method="descent", start=torch.zeros(3, 4), polish="no"
        )


def test_newton_stops_at_the_tolerance_except_in_float64():
    # float32 (a tanh net): stops once every class is within tol / 2, like the other solvers
    torch.manual_seed(3)
    smooth = nn.Sequential(nn.Linear(16, 12), nn.Tanh(), nn.Linear(12, 3)).eval()
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        t = smooth(torch.rand(3, 16, generator=g))
    start = torch.rand(3, 16, generator=g)
    loose = invert(smooth, t, method="newton", start=start, tol=1e-2, progress=False)
    tight = invert(smooth, t, method="newton", start=start, tol=1e-6, progress=False)
    assert loose.success.all() and tight.success.all()
    assert loose.steps < tight.steps and loose.settings["dtype"] == "float32"
    # float64 (a SELU stack): on to the rounding floor whatever the tolerance
    selu = selu_net((16, 12, 3))
    with torch.no_grad():
        t = selu(torch.rand(3, 16, generator=g, dtype=torch.float64))
    r = invert(selu, t, method="newton", start=start.double(), tol=1e-2, progress=False)
    assert r.settings["dtype"] == "float64" and r.rel_error.max() < 1e-10
