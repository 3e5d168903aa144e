"""Targets and start images (nnspaces.inversion.targets) on toy score statistics whose answers
are worked out by hand in the comments."""

import numpy as np
import pytest
import torch
from torch import nn

from nnspaces.inversion.targets import (
    STARTS,
    TARGETS,
    ScoreStats,
    check_classes,
    check_targets,
    class_averages,
    make_targets,
    score_stats,
    start_images,
)


@pytest.fixture
def toy():
    """Four images per class for two classes; outputs chosen by hand."""
    x = torch.arange(8 * 4, dtype=torch.float32).reshape(8, 1, 2, 2)
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    out = torch.tensor(
        [[5, 0], [1, 2], [4, 1], [3, 3], [0, 6], [2, 9], [1, 1], [0, 4]], dtype=torch.float64
    )
    return x, y, ScoreStats(out, y)


@pytest.fixture
def three():
    """Three outputs whose minima (-1, 2, 5) and maxima (7, 8, 9) all differ."""
    out = torch.tensor(
        [[7, 2, 5], [-1, 8, 6], [0, 3, 9], [3, 4, 7]],
        dtype=torch.float64,
    )
    return ScoreStats(out, torch.tensor([0, 1, 2, 0]))


def test_names():
    assert TARGETS == ("min-max", "percentile", "notebook", "probability")
    assert STARTS == ("avg-img", "min-img", "avg-min-img", "avg-img+noise", "avg-all")


def test_targets_match_hand_values(toy):
    _, _, stats = toy
    t = make_targets(stats, "min-max")
    # output 0 ranges over 0..5, output 1 over 0..9: class c asks max of c, min elsewhere
    assert t.dtype == torch.float64
    assert torch.equal(t, torch.tensor([[5.0, 0.0], [0.0, 9.0]], dtype=torch.float64))
    t1 = make_targets(stats, "min-max", classes=1)
    assert torch.equal(t1, t[1:])
    p = make_targets(stats, "percentile", percentiles=(0, 100))
    assert torch.equal(p, t)
    p = make_targets(stats, "percentile", percentiles=(25, 75))
    # output 0 sorted: 0 0 1 1 2 3 4 5 -> 25th 0.75, 75th 3.25; output 1: 0 1 1 2 3 4 6 9
    # -> 25th 1.0, 75th 4.5 (linear interpolation between order statistics)
    expected = torch.tensor([[3.25, 1.0], [0.75, 4.5]], dtype=torch.float64)
    assert torch.allclose(p, expected)
    # the default percentiles are 25 / 75
    assert torch.allclose(make_targets(stats, "percentile"), expected)


def test_min_max_and_notebook_targets_differ_as_documented(three):
    # minima (-1, 2, 5), maxima (7, 8, 9)
    t = make_targets(three, "min-max")
    assert torch.equal(t, torch.tensor([[7.0, 2, 5], [-1, 8, 5], [-1, 2, 9]], dtype=torch.float64))
    # notebook: row c is output c's minimum everywhere except its maximum at c
    nb = make_targets(three, "notebook")
    assert torch.equal(nb, torch.tensor([[7.0, -1, -1], [2, 8, 2], [5, 5, 9]], dtype=torch.float64))
    # rows follow the requested class order
    assert torch.equal(make_targets(three, "notebook", classes=[2, 0]), nb[[2, 0]])
    assert torch.equal(make_targets(three, "min-max", classes=[2, 0]), t[[2, 0]])


def test_score_stats_summaries(three):
    assert torch.equal(three.min(), torch.tensor([-1.0, 2, 5], dtype=torch.float64))
    assert torch.equal(three.max(), torch.tensor([7.0, 8, 9], dtype=torch.float64))
    # output 0 sorted: -1 0 3 7 -> median (50th) 1.5; output 2: 5 6 7 9 -> 6.5
    assert torch.allclose(three.percentile(50), torch.tensor([1.5, 3.5, 6.5], dtype=torch.float64))
    assert torch.equal(three.class_outputs(0), three.outputs[[0, 3]])
    assert three.n_outputs == 3
    assert "4 images x 3 outputs" in repr(three)
    with pytest.raises(ValueError, match="percentile 101 must be in"):
        three.percentile(101)


def test_score_stats_runs_the_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).eval()
    x = torch.rand(7, 1, 2, 2)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    s = score_stats(model, x, y, batch_size=3)  # batches of 3, 3, 1
    W, b = model[1].weight.detach().double(), model[1].bias.detach().double()
    expected = x.reshape(7, 4).double() @ W.T + b
    assert s.outputs.dtype == torch.float64 and s.labels.dtype == torch.int64
    assert torch.allclose(s.outputs, expected, atol=1e-6)
    assert torch.equal(s.labels, y)
    with pytest.raises(ValueError, match="7 images but 6 labels"):
        score_stats(model, x, y[:6])


def test_score_stats_leaves_the_model_as_it_was():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Dropout(0.5))
    model.train()
    score_stats(model, torch.rand(6, 1, 2, 2), torch.arange(6) % 3)
    assert model.training


def test_check_classes():
    assert check_classes(None, 3) == [0, 1, 2]
    assert check_classes(2, 3) == [2]
    assert check_classes(np.int64(1), 3) == [1]
    assert check_classes([2, 0], 3) == [2, 0]  # order kept
    assert all(type(c) is int for c in check_classes(np.array([1, 0]), 3))
    with pytest.raises(ValueError, match="class 3 is out of range; allowed: 0..2"):
        check_classes([0, 3], 3)
    with pytest.raises(ValueError, match="class -1 is out of range"):
        check_classes(-1, 3)
    with pytest.raises(ValueError, match="class True is out of range"):
        check_classes([True], 3)
    with pytest.raises(ValueError, match="class 1.0 is out of range"):
        check_classes([1.0], 3)
    with pytest.raises(ValueError, match="classes is empty"):
        check_classes([], 3)


def test_check_targets():
    t = check_targets(np.array([1.0, 2.0, 3.0], dtype=np.float32), 1, 3)
    assert t.shape == (1, 3) and t.dtype == torch.float64 and t.device.type == "cpu"
    assert torch.equal(t, torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"target of length 2 \(shape \(4, 2\)\); expected 3"):
        check_targets(torch.zeros(4, 2), 4, 3)
    with pytest.raises(ValueError, match="4 target rows for 2 classes"):
        check_targets(torch.zeros(4, 3), 2, 3)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="NaN or infinite"):
            check_targets(torch.tensor([[0.0, bad, 1.0]]), 1, 3)


def test_make_targets_rejects_bad_input(toy):
    _, _, stats = toy
    with pytest.raises(ValueError, match="unknown target 'max'; allowed: min-max, percentile"):
        make_targets(stats, "max")
    with pytest.raises(ValueError, match="must satisfy 0 <= low < high <= 100"):
        make_targets(stats, "percentile", percentiles=(75, 25))  # swapped
    with pytest.raises(ValueError, match="must satisfy"):
        make_targets(stats, "percentile", percentiles=(0, 101))
    with pytest.raises(ValueError, match="class 2 is out of range; allowed: 0..1"):
        make_targets(stats, "min-max", classes=[2])


def test_class_averages(toy):
    x, y, _ = toy
    # class 1 images are 16..31 in blocks of four: their mean is the block 22..25
    avg = class_averages(x, y, [1, 0])
    assert avg.shape == (2, 1, 2, 2)
    assert torch.equal(avg[0].flatten(), torch.tensor([22.0, 23, 24, 25]))
    assert torch.equal(avg[1].flatten(), torch.tensor([6.0, 7, 8, 9]))


def test_start_images_match_hand_values(toy):
    x, y, stats = toy
    t = make_targets(stats, "min-max")  # class 0: (5, 0); class 1: (0, 9)
    avg = start_images("avg-img", x, y)
    assert torch.equal(avg[0], x[:4].mean(0)) and torch.equal(avg[1], x[4:].mean(0))
    # squared distances to (5, 0): 0, 20, 2, 13 -> image 0 then 2; to (0, 9): 9, 4, 65, 25
    # -> image 5 then 4
    mn = start_images("min-img", x, y, t, stats=stats)
    assert torch.equal(mn[0], x[0]) and torch.equal(mn[1], x[5])
    am = start_images("avg-min-img", x, y, t, stats=stats, fraction=0.5)
    assert torch.equal(am[0], (x[0] + x[2]) / 2) and torch.equal(am[1], (x[5] + x[4]) / 2)
    # ceil(0.3 * 4) = 2 images too; fraction 1 averages the whole class
    am3 = start_images("avg-min-img", x, y, t, stats=stats, fraction=0.3)
    assert torch.equal(am3, am)
    assert torch.equal(start_images("avg-min-img", x, y, t, stats=stats, fraction=1.0), avg)
    # the default fraction 0.25 takes ceil(1) = 1 image: min-img
    assert torch.equal(start_images("avg-min-img", x, y, t, stats=stats), mn)
    n1 = start_images("avg-img+noise", x, y, seed=4)
    n2 = start_images("avg-img+noise", x, y, seed=4)
    n3 = start_images("avg-img+noise", x, y, seed=5)
    assert torch.equal(n1, n2) and not torch.equal(n1, n3)
    assert 0 <= (n1 - avg).min() and (n1 - avg).max() < 1


def test_start_images_follow_the_class_order(toy):
    x, y, stats = toy
    # targets for classes [1, 0] in that order: row 0 belongs to class 1
    t = make_targets(stats, "min-max", classes=[1, 0])
    mn = start_images("min-img", x, y, t, classes=[1, 0], stats=stats)
    assert torch.equal(mn[0], x[5]) and torch.equal(mn[1], x[0])
    avg = start_images("avg-img", x, y, classes=[1, 0])
    assert torch.equal(avg[0], x[4:].mean(0)) and torch.equal(avg[1], x[:4].mean(0))


def test_start_images_reject_bad_input(toy):
    x, y, stats = toy
    t = make_targets(stats, "min-max")
    with pytest.raises(ValueError, match="unknown start 'mean-img'; allowed: avg-img"):
        start_images("mean-img", x, y)
    with pytest.raises(ValueError, match="start 'min-img' needs the score statistics"):
        start_images("min-img", x, y, t)
    with pytest.raises(ValueError, match="stats were not computed on these images"):
        start_images("min-img", x, y.flip(0), t, stats=stats)
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match=f"fraction={bad!r} must be in"):
            start_images("avg-min-img", x, y, t, stats=stats, fraction=bad)
