"""Measuring inverse images (nnspaces.inversion.results): evaluate_images against numbers
worked out by hand, and the per-class picks of take_rows and combine_best."""

import json
import math
import warnings

import numpy as np
import pytest
import torch
from helpers import selu_net
from torch import nn

from nnspaces.inversion import invert
from nnspaces.inversion.results import combine_best, evaluate_images, take_rows
from nnspaces.models import build_model


def reader():
    """Outputs are the first three pixels of a 2x2 image (float32, no bias)."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.eye(3, 4))
    return model.eval()


def images(*rows):
    return torch.tensor(rows, dtype=torch.float64).reshape(len(rows), 1, 2, 2)


EYE = torch.eye(3, dtype=torch.float64)


# ----------------------------------------------------------------------------- evaluate_images


def test_evaluate_images_hand_values():
    img = images([1, 0, 0, 0.5], [0, 2, 0, -1], [0, 0, 3, 0])
    t = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 3]], dtype=torch.float64)
    r = evaluate_images(
        reader(),
        img,
        t,
        [0, 1, 2],
        method="m",
        start=torch.zeros_like(img),
        ok=np.array([True, True, False]),
        reasons=["", "", "failed earlier"],
        seconds=1.5,
    )
    # outputs: (1, 0, 0), (0, 2, 0), (0, 0, 3)
    assert torch.equal(r.output, t + torch.tensor([[0, 0, 0], [0, 1.0, 0], [0, 0, 0]]))
    assert np.allclose(r.rel_error, [0.0, 1.0, 0.0])
    e = math.e
    assert np.allclose(r.prob, [e / (e + 2), e**2 / (e**2 + 2), e**3 / (e**3 + 2)])
    assert list(r.predicted) == [0, 1, 2]
    assert np.allclose(r.start_distance, [math.sqrt(1.25), math.sqrt(5), 3.0])
    assert np.allclose(r.outside, [0.0, 0.5, 0.25])  # pixels 2 and -1; 3
    assert list(r.success) == [True, False, False]
    assert r.reason == ["", "relative error 1 > tol 0.0001", "failed earlier"]
    assert r.n_success == 1 and len(r) == 3 and r.seconds == 1.5
    assert r.source == ["m", "m", "m"] and r.classes == [0, 1, 2]
    assert r.network == "Sequential"  # an unregistered model is named by its class


def test_tolerance_and_box_decide_success():
    # relative errors 5e-5 and 0: both succeed at tol 1e-4, the first fails at tol 1e-5
    img = images([1, 0, 0, 0], [0, 1, 0, 1.5])
    t = torch.tensor([[1 + 5e-5, 0, 0], [0, 1, 0]], dtype=torch.float64)
    loose = evaluate_images(reader(), img, t, [0, 1], method="m", tol=1e-4)
    assert np.allclose(loose.rel_error, [5e-5 / (1 + 5e-5), 0.0])
    assert list(loose.success) == [True, True]
    tight = evaluate_images(reader(), img, t, [0, 1], method="m", tol=1e-5)
    assert list(tight.success) == [False, True]
    assert tight.reason[0].startswith("relative error 5e-05 > tol 1e-05")
    boxed = evaluate_images(reader(), img, t, [0, 1], method="m", require_box=True)
    assert list(boxed.success) == [True, False]
    assert boxed.reason[1] == "25.0% of pixels outside [0, 1]"


def test_evaluated_in_float64_on_the_cpu_without_touching_the_model():
    model = reader()
    model.train()
    flags = [p.requires_grad for p in model.parameters()]
    img = images([1 + 1e-10, 0, 0, 0])  # a difference float32 cannot represent
    t = torch.tensor([[1.0, 0, 0]], dtype=torch.float64)
    r = evaluate_images(model, img, t, [0], method="m", tol=1e-12)
    assert r.output.dtype == torch.float64 and r.target.dtype == torch.float64
    assert r.rel_error[0] == pytest.approx(1e-10, rel=1e-5)
    assert not r.success[0]
    for v in (r.image, r.start, r.output, r.target):
        assert v.device.type == "cpu"
    assert torch.equal(r.start, r.image)  # no start given: the image itself, distance 0
    assert r.start_distance[0] == 0
    assert model.training and [p.requires_grad for p in model.parameters()] == flags
    assert next(model.parameters()).dtype == torch.float32


def test_nan_images_fail_and_count_as_infinite_error():
    img = images([1, 0, 0, 0], [math.nan] * 4, [0, 0, 1, 0])
    t = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 2]], dtype=torch.float64)
    r = evaluate_images(reader(), img, t, [0, 1, 2], method="m")
    assert np.isnan(r.outside[1]) and np.isnan(r.rel_error[1])
    assert list(r.success) == [True, False, False]
    # errors 0, NaN (infinite), 0.5: the median is 0.5, not the NaN-free median 0.25
    assert r.median_rel_error == pytest.approx(0.5)
    json.dumps(r.to_dict(), allow_nan=False)  # NaN becomes None
    d = r.to_dict(images=True)
    assert d["rel_error"][1] is None and d["outside"][1] is None
    assert d["image"][1] == [None] * 4 and d["image"][0] == [1.0, 0.0, 0.0, 0.0]
    assert d["success"] == [True, False, False] and d["output"][0] == [1.0, 0.0, 0.0]
    assert "image" not in r.to_dict()


def test_a_result_without_any_image_prints_n_a_without_warnings():
    """A method that failed every class (e.g. the greedy walk through fcnn5): its summary and
    the comparison table say "n/a", and no "Mean of empty slice" warning is raised."""
    from nnspaces.inversion.crosscheck import BASELINE, comparison_table

    img = images([math.nan] * 4, [math.nan] * 4)
    t = torch.tensor([[1.0, 0, 0], [0, 1, 0]], dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = evaluate_images(reader(), img, t, [0, 1], method="m", network="net")
        text = repr(r)
        ok = evaluate_images(reader(), images([1, 0, 0, 0], [0, 1, 0, 0]), t, [0, 1], method="m")
        table = comparison_table({"net": {BASELINE: ok, "m": r}}, {"net": reader()})
    assert "rel_error n/a (no image)" in text and "outside [0,1] n/a" in text
    assert "nan" not in text and "inf" not in text
    assert table.text.splitlines()[-1].split()[4:6] == ["n/a", "n/a"]  # prob, outside


def test_registered_networks_are_named_by_the_registry():
    model = build_model("fcnn1")
    t = torch.zeros(1, 10, dtype=torch.float64)
    assert evaluate_images(model, torch.zeros(1, 1, 28, 28), t, [3], method="m").network == "fcnn1"
    r = evaluate_images(model, torch.zeros(1, 1, 28, 28), t, [3], method="m", network="mine")
    assert r.network == "mine"


def test_table_has_one_line_per_class():
    img = images([1, 0, 0, 0], [0, 2, 0, 0])
    r = evaluate_images(reader(), img, EYE[:2], [0, 1], method="m")
    lines = r.table().splitlines()
    assert len(lines) == 3 and lines[0].startswith("class")
    assert "yes" in lines[1] and lines[2].rstrip().endswith("relative error 1 > tol 0.0001")


# ----------------------------------------------------------------------------- picks


def three_results():
    """Rows with hand-chosen errors against the targets e_0, e_1, e_2: a (0, 0.5, 2), b (0.25,
    NaN image, 1), c (1, 0.125, 3); inside [0, 1]: a's row 0, b's row 2, c's rows 0."""
    t = EYE
    a = evaluate_images(
        reader(),
        images([1, 0, 0, 0], [0, 1.5, 0, 0], [0, 0, 3, 0]),
        t,
        [0, 1, 2],
        method="a",
        seconds=1.0,
    )
    b = evaluate_images(
        reader(),
        images([1.25, 0, 0, 0], [math.nan] * 4, [0, 0, 0, 0]),
        t,
        [0, 1, 2],
        method="b",
        seconds=2.0,
    )
    c = evaluate_images(
        reader(),
        images([0, 0, 0, 0], [0, 1.125, 0, 0], [0, 0, 4, 0]),
        t,
        [0, 1, 2],
        method="c",
        seconds=4.0,
    )
    return a, b, c


def test_three_results_have_the_documented_errors():
    a, b, c = three_results()
    assert np.allclose(a.rel_error, [0, 0.5, 2])
    assert np.allclose(b.rel_error[[0, 2]], [0.25, 1]) and np.isnan(b.rel_error[1])
    assert np.allclose(c.rel_error, [1, 0.125, 3])
    assert list(a.outside) == [0, 0.25, 0.25] and b.outside[0] == 0.25


def test_take_rows_builds_a_result_from_rows():
    a, b, c = three_results()
    r = take_rows([a, b, c], [2, 0, 1], method="mix")
    assert r.method == "mix" and r.source == ["c", "a", "b"]
    assert torch.equal(r.image[0], c.image[0]) and torch.equal(r.image[1], a.image[1])
    assert np.allclose(r.rel_error, [1, 0.5, 1])
    assert torch.equal(r.output[2], b.output[2]) and torch.equal(r.target, a.target)
    assert list(r.success) == [False, False, False]
    assert r.seconds == 7.0  # each picked result counted once
    assert r.settings == {"from": ["a", "b", "c"]}
    with pytest.raises(ValueError, match="needs 3 indices in 0..2"):
        take_rows([a, b, c], [0, 3, 1], method="x")
    with pytest.raises(ValueError, match="needs 3 indices"):
        take_rows([a, b, c], [0, 1], method="x")
    with pytest.raises(ValueError, match="at least one result"):
        take_rows([], [], method="x")
    other = evaluate_images(reader(), a.image, EYE[[1, 0, 2]], [1, 0, 2], method="o")
    with pytest.raises(ValueError, match="different classes or targets"):
        take_rows([a, other], [0, 1, 0], method="x")


def test_combine_best_by_hand():
    a, b, c = three_results()
    best = combine_best([a, b, c])
    # row 0: a (0); row 1: c (0.125) - b's NaN is no winner; row 2: b (1)
    assert best.method == "best" and best.source == ["a", "c", "b"]
    assert np.allclose(best.rel_error, [0, 0.125, 1])
    assert list(best.success) == [True, False, False]
    # best-box: row 0: a (inside, lowest); row 1: nothing is inside, the lowest error is kept;
    # row 2: b, the only one inside (a and c have a pixel of 3 / 4)
    boxed = combine_best([a, b, c], box=True)
    assert boxed.method == "best-box" and boxed.source == ["a", "c", "b"]
    assert boxed.reason[1] == "no image inside [0, 1] among the results"
    assert not boxed.success[1]
    with pytest.raises(ValueError, match="at least one result"):
        combine_best([])


def test_combine_best_box_prefers_inside_over_lower_error():
    t = EYE[:1]
    outside = evaluate_images(reader(), images([1, 0, 0, -0.5]), t, [0], method="out")
    inside = evaluate_images(reader(), images([0.5, 0, 0, 0]), t, [0], method="in")
    assert outside.rel_error[0] < inside.rel_error[0]
    assert combine_best([outside, inside]).source == ["out"]
    assert combine_best([outside, inside], box=True).source == ["in"]


def test_combine_best_picks_lowest_error_and_box():
    model = selu_net((30, 16, 4))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        t = model(torch.rand((4, 30), generator=g, dtype=torch.float64))
    start = torch.full((4, 30), 0.5, dtype=torch.float64)
    kw = dict(start=start, network="selu-fcnn", progress=False)
    exact = invert(model, t, method="exact", **kw)
    box = invert(model, t, method="box", steps=50, **kw)
    best = combine_best([box, exact])
    assert np.array_equal(best.rel_error, np.minimum(box.rel_error, exact.rel_error))
    best_box = combine_best([box, exact], box=True)
    for i in range(4):
        inside = [r for r in (box, exact) if r.outside[i] == 0]
        assert best_box.rel_error[i] == min(r.rel_error[i] for r in inside)
        assert best_box.outside[i] == 0
        assert best_box.source[i] in ("box", "exact")
