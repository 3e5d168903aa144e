"""Natural pre-images (nnspaces.inversion.natural) on the tiny networks and hand-made data of
test_comparison: prior runs in one batch against each run alone, the prior frontier counted by
hand, the search's choice on the frontier, and each prior alone."""

import numpy as np
import pytest
import torch
from test_crosscheck import hand_predict, relu_model, row_reader, selu_model, toy_data
from torch import nn

from nnspaces.inversion import QUICK_STEPS, invert
from nnspaces.inversion.natural import (
    NATURAL_SEARCH,
    NATURAL_SEARCH_DEFAULT,
    NATURAL_WEIGHTS,
    invert_runs,
    natural_preimages,
    prior_effects,
    prior_frontier,
)
from nnspaces.models import REGISTRY


@pytest.fixture(scope="module")
def data():
    return toy_data()


# ----------------------------------------------------------------------------- priors


def test_prior_frontier(data):
    a, b = selu_model(), relu_model()
    others = {"b": b, "reader": row_reader()}
    rows = prior_frontier(
        a,
        "min-max",
        others,
        weights=(0.0, 1e3),
        base_priors={"tv": 0.5},
        data=data,
        steps=30,
        progress=False,
    )
    assert [r["weight"] for r in rows] == [0.0, 1e3]
    assert rows[0]["result"].settings["priors"] == {"tv": 0.5}
    assert rows[1]["result"].settings["priors"] == {"tv": 0.5, "l2-avg": 1e3}
    for row in rows:
        res = row["result"]
        assert res.method == "box" and (res.outside == 0).all()
        agree = {
            name: hand_predict(m, res.image) == torch.tensor([0, 1, 2])
            for name, m in others.items()
        }
        assert row["agree_by_network"] == {k: int(v.sum()) for k, v in agree.items()}
        assert row["n_agree"] == int((agree["b"] & agree["reader"]).sum())
        assert row["median_rel_error"] == res.median_rel_error
        assert row["max_rel_error"] == float(res.rel_error.max())
    # a heavy l2-avg weight keeps the images at the class averages they start from
    assert (rows[1]["result"].start_distance < rows[0]["result"].start_distance).all()
    assert rows[1]["result"].start_distance.max() < 0.05
    with pytest.raises(ValueError, match="unknown prior 'blur'"):
        prior_frontier(a, "min-max", others, prior="blur", data=data)


def test_natural_search_table():
    assert set(NATURAL_SEARCH) <= set(REGISTRY)
    assert NATURAL_SEARCH_DEFAULT == {"targets": "min-max", "prior": "l2-avg"}
    assert NATURAL_WEIGHTS[0] == 0.0 and list(NATURAL_WEIGHTS) == sorted(NATURAL_WEIGHTS)


@pytest.mark.parametrize("recognised", [0, 4])
def test_natural_preimages_of_an_unknown_network(data, recognised):
    models = {"mine": selu_model(), "reader": row_reader()}
    nat = natural_preimages(models, "mine", data=data, quick=True, recognised=recognised)
    assert (nat.targets, nat.prior) == ("min-max", "l2-avg")  # the default search
    assert [r["weight"] for r in nat.frontier] == list(NATURAL_WEIGHTS[::2])
    if recognised == 0:  # every weight qualifies: the lowest error wins
        best = min(nat.frontier, key=lambda r: r["median_rel_error"])
    else:  # none can (3 classes): the most recognised, then the lowest error
        best = max(nat.frontier, key=lambda r: (r["n_agree"], -r["median_rel_error"]))
    assert nat.chosen_weight == best["weight"] and nat.n_recognised == best["n_agree"]
    assert nat.result.settings["priors"] == ({"l2-avg": best["weight"]} if best["weight"] else {})
    assert nat.result.network == "mine"


def bn_conv_model():
    torch.manual_seed(2)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(36, 3)
    )
    model[1].running_mean.uniform_(-0.2, 0.2)
    return model.eval()


def test_invert_runs_matches_each_run_alone(data):
    model = bn_conv_model()
    runs = {"none": None, "tv": {"tv": 0.2}, "bn": {"bn": 0.1}, "l2": {"l2-avg": 5.0}}
    kw = dict(method="box", preset="natural", steps=40, data=data, classes=[2, 0], progress=False)
    batched = invert_runs(model, "min-max", runs, **kw)
    assert list(batched) == list(runs)
    for label, pri in runs.items():
        alone = invert(model, "min-max", priors=pri, **kw)
        r = batched[label]
        assert r.classes == [2, 0] and r.settings["priors"] == (pri or {})
        assert torch.allclose(r.image, alone.image, atol=1e-5)
        assert np.allclose(r.rel_error, alone.rel_error, rtol=1e-4)
        assert torch.equal(r.target, alone.target)
    # tv and l2-avg share a batch; bn, whose statistics cost per row, has its own, and the
    # run without priors, which stops at the tolerance and is polished, its own
    assert [batched[k].settings["batch"]["runs"] for k in runs] == [1, 2, 1, 2]
    share = batched["tv"].settings["batch"]["seconds"] / 2
    assert batched["tv"].seconds == batched["l2"].seconds == pytest.approx(share)
    assert batched["none"].settings["polish"]["handoff"] > 0
    assert not torch.allclose(batched["l2"].image, batched["none"].image, atol=1e-3)


def test_invert_runs_repeats_given_targets_and_starts(data):
    model = selu_model()
    t = torch.tensor([[2.0, -1.0, 0.0], [0.0, 0.5, 1.0]])
    start = torch.full((2, 1, 3, 3), 0.5)
    kw = dict(method="descent", steps=30, classes=[0, 1], data=data, progress=False)
    batched = invert_runs(model, t, {"a": {"tv": 0.1}, "b": {"tv": 1.0}}, start=start, **kw)
    for label, w in (("a", 0.1), ("b", 1.0)):
        alone = invert(model, t, start=start, priors={"tv": w}, **kw)
        assert torch.allclose(batched[label].image, alone.image, atol=1e-5)
        assert torch.equal(batched[label].start, alone.start)


def test_prior_effects(data):
    res = prior_effects(selu_model(), "min-max", {"tv": 0.1, "l2-avg": 2.0}, data=data, quick=True)
    assert list(res) == ["none", "tv 0.1", "l2-avg 2"]
    assert res["none"].settings["priors"] == {}
    assert res["tv 0.1"].settings["priors"] == {"tv": 0.1}
    for r in res.values():
        assert r.method == "box" and r.settings["steps"] == QUICK_STEPS
        assert r.settings["lr"] == 0.1  # the gentle "natural" preset
