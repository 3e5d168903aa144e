"""The method comparison (nnspaces.inversion.crosscheck) on two tiny networks over a hand-made
data set: run_methods, per-class picks, cross-checks counted by hand, the table and the saved
image file (the natural pre-images in test_natural)."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from nnspaces.data import Dataset
from nnspaces.inversion import COMPARED, QUICK_ROOT_STEPS, QUICK_STEPS, ScoreStats, make_targets
from nnspaces.inversion.crosscheck import (
    BASELINE,
    comparison_table,
    cross_check,
    pick_per_class,
    recognised_by_all,
    run_methods,
)
from nnspaces.inversion.imagesets import save_inversions
from nnspaces.inversion.natural import NaturalPreimages, prior_effects


def toy_data():
    """Ten 3x3 images per class for three classes: class c is bright in row c."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(30, 1, 3, 3, generator=g) * 0.3
    y = torch.arange(30) % 3
    for i in range(30):
        x[i, 0, int(y[i])] += 0.6
    return Dataset("toy", x, y, x[:0], y[:0], x[:6], y[:6], "hand-made")


def selu_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(9, 3), nn.SELU()).eval()


def relu_model():
    torch.manual_seed(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(9, 5), nn.ReLU(), nn.Linear(5, 3)).eval()


def row_reader():
    """Classifies a 3x3 image by its brightest row: what a person would say."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(9, 3, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.kron(torch.eye(3), torch.ones(1, 3)))
    return model.eval()


def hand_predict(model, images):
    with torch.no_grad():
        return model(torch.nan_to_num(images.float())).argmax(1)


@pytest.fixture(scope="module")
def data():
    return toy_data()


@pytest.fixture(scope="module")
def runs(data):
    a, b = selu_model(), relu_model()
    return {
        "a": run_methods(a, "min-max", data=data, network="a", quick=True, progress=False),
        "b": run_methods(b, "min-max", data=data, network="b", quick=True, progress=False),
    }, {"a": a, "b": b}


# ----------------------------------------------------------------------------- run_methods


def test_run_methods_runs_only_the_methods_asked_for(runs):
    results, _ = runs
    data = toy_data()
    some = run_methods(
        selu_model(), "min-max", data=data, network="a", quick=True, methods=("newton", "exact")
    )
    # the table's order; no "best-box": neither method gave an image inside [0, 1], and a
    # "best-box" of them would be "best" under a name that promises the box
    assert all((np.asarray(some[m].outside) > 0).all() for m in ("exact", "newton"))
    assert list(some) == ["exact", "newton", "best"]
    for method in ("exact", "newton"):  # the same runs as among all methods
        np.testing.assert_allclose(some[method].rel_error, results["a"][method].rel_error)
    best = np.fmin(some["exact"].rel_error, some["newton"].rel_error)
    np.testing.assert_allclose(some["best"].rel_error, best)  # best of these two only
    relu = run_methods(relu_model(), "min-max", data=data, quick=True, methods=("exact",))
    assert relu == {}  # exact does not apply to a ReLU network: nothing to combine
    with pytest.raises(ValueError, match=r"methods \['newtn'\] are not compared"):
        run_methods(relu_model(), "min-max", data=data, methods=("newtn",))


def test_run_methods_runs_what_applies(runs):
    results, _ = runs
    assert list(results["a"]) == [*COMPARED, "best", "best-box"]
    assert list(results["b"]) == [m for m in COMPARED if m != "exact"] + ["best", "best-box"]
    for net, by_method in results.items():
        for method, r in by_method.items():
            assert r.network == net and r.classes == [0, 1, 2]
            if method in ("descent", "box"):
                assert r.settings["steps"] == QUICK_STEPS
            elif method in ("newton", "lm", "lm-box"):
                assert r.settings["steps"] == QUICK_ROOT_STEPS  # each step: K backward passes
            elif method.endswith("+training"):
                assert r.settings["steps"] == 100  # the paper's "+training" is not capped
    assert results["a"]["exact"].success.all()


def test_best_and_best_box_by_hand(runs):
    results, _ = runs
    for by_method in results.values():
        found = {k: v for k, v in by_method.items() if k not in ("best", "best-box")}
        errs = np.array(
            [np.where(np.isnan(r.rel_error), np.inf, r.rel_error) for r in found.values()]
        )
        inside = np.array([r.outside == 0 for r in found.values()])
        assert np.array_equal(by_method["best"].rel_error, errs.min(0))
        boxed = np.where(inside, errs, np.inf).min(0)
        for i in range(3):
            if np.isfinite(boxed[i]):
                assert by_method["best-box"].rel_error[i] == boxed[i]
                assert by_method["best-box"].outside[i] == 0


def test_run_methods_uses_the_given_stats(data):
    # made-up statistics: every method's targets come from them
    out = torch.arange(90, dtype=torch.float64).reshape(30, 3) % 11 - 5
    stats = ScoreStats(out, data.y_train)
    res = run_methods(relu_model(), "min-max", data=data, stats=stats, quick=True, progress=False)
    for method in ("min-img", "box", "best"):
        assert torch.equal(res[method].target, make_targets(stats, "min-max"))
    assert res["box"].network == "Sequential"


def test_pick_per_class(runs):
    results, _ = runs
    a = results["a"]
    picked = pick_per_class(a, {0: "exact", 1: "avg-img", 2: "box"})
    assert picked.method == "paper" and picked.source == ["exact", "avg-img", "box"]
    for i, m in enumerate(["exact", "avg-img", "box"]):
        assert torch.equal(picked.image[i].to(a[m].image.dtype), a[m].image[i])
        assert picked.rel_error[i] == a[m].rel_error[i]
    with pytest.raises(ValueError, match=r"methods \['magic'\] not among the results"):
        pick_per_class(a, {0: "exact", 1: "magic", 2: "box"})


# ----------------------------------------------------------------------------- cross-checks


def test_cross_check_counts_agreement():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3, bias=False)).eval()
    with torch.no_grad():
        model[1].weight.copy_(torch.eye(3, 4))
    imgs = torch.tensor([[1.0, 0, 0, 0], [0, 0, 1.0, 0], [float("nan"), 0, 0, 0]])
    check = cross_check(imgs, {"m": model}, classes=[0, 1, 0])
    assert check["m"]["predicted"][:2] == [0, 2]
    assert check["m"]["agree"] == [True, False, False] and check["m"]["n_agree"] == 1
    # softmax of (1, 0, 0) at class 0, of (0, 0, 1) at class 1
    e = np.e
    assert check["m"]["prob"][:2] == pytest.approx([e / (e + 2), 1 / (e + 2)])
    with pytest.raises(ValueError, match="3 images for 2 classes"):
        cross_check(imgs, {"m": model}, classes=[0, 1])
    with pytest.raises(ValueError, match="needs the classes"):
        cross_check(imgs, {"m": model})


def test_cross_check_takes_classes_from_a_result(runs):
    results, models = runs
    r = results["a"]["exact"]
    check = cross_check(r, {"b": models["b"], "reader": row_reader()})
    for name, model in (("b", models["b"]), ("reader", row_reader())):
        pred = hand_predict(model, r.image)
        assert check[name]["predicted"] == pred.tolist()
        assert check[name]["agree"] == (pred == torch.tensor([0, 1, 2])).tolist()


def test_recognised_by_all():
    check = {
        "x": {"agree": [True, True, False, True]},
        "y": {"agree": [True, False, False, True]},
    }
    assert recognised_by_all(check).tolist() == [True, False, False, True]


# ----------------------------------------------------------------------------- the table


def test_comparison_table(runs):
    results, models = runs
    table = comparison_table(results, models)
    assert len(table.rows) == len(results["a"]) + len(results["b"])
    for row in table.rows:
        net, method = row["network"], row["method"]
        r = results[net][method]
        other = "b" if net == "a" else "a"
        agree = hand_predict(models[other], r.image) == torch.tensor(r.classes)
        agree &= torch.isfinite(r.image.reshape(3, -1)).all(1)
        assert row["recognised_by_others"] == int(agree.sum())
        assert table.cross_model[net][method] == {
            other: int(agree.sum()),
            "all_others": int(agree.sum()),
        }
        base = results[net][BASELINE].median_rel_error
        assert row["vs_original_training"] == pytest.approx(r.median_rel_error / base)
        assert row["n_success"] == r.n_success
        assert row["mean_prob"] == pytest.approx(float(np.mean(r.prob)))
    lines = table.text.splitlines()
    assert len(lines) == 2 + len(table.rows)
    assert lines[2].split()[:2] == ["a", "avg-img"]


def test_comparison_table_counts_out_of_the_classes(runs):
    results, models = runs
    table = comparison_table(results, models)
    row = table.rows[0]
    assert f"{row['n_success']}/3" in table.text.splitlines()[2]


# ----------------------------------------------------------------------------- saving


def test_save_inversions_round_trip(runs, data, tmp_path):
    results, _ = runs
    picked = {"a": {m: results["a"][m] for m in ("exact", "box")}}
    natural = {
        "a": NaturalPreimages(
            "a", "min-max", "l2-avg", [{"weight": 0.1}], 0.1, results["a"]["box"], 2
        )
    }
    effects = prior_effects(selu_model(), "min-max", {"tv": 0.1}, data=data, quick=True)
    extra = {f"a/priors/{label}": r for label, r in effects.items()}
    path = save_inversions(picked, tmp_path / "sub" / "inv.npz", natural=natural, extra=extra)
    assert path == tmp_path / "sub" / "inv.npz"
    with np.load(path, allow_pickle=False) as z:
        keys = set(z.files)
        expected = {
            f"a/{m}/{k}" for m in ("exact", "box") for k in ("images", "targets", "classes")
        }
        for group in ("a/natural", "a/priors/none", "a/priors/tv 0.1"):
            expected |= {f"{group}/{k}" for k in ("images", "targets", "classes", "settings")}
        assert keys == expected
        for m in ("exact", "box"):
            assert np.array_equal(z[f"a/{m}/images"], results["a"][m].image.numpy())
            assert np.array_equal(z[f"a/{m}/targets"], results["a"][m].target.numpy())
        assert np.array_equal(z["a/natural/images"], results["a"]["box"].image.numpy())
        assert z["a/natural/classes"].dtype == np.int64
        assert z["a/natural/classes"].tolist() == [0, 1, 2]
        settings = json.loads(str(z["a/natural/settings"]))
        assert settings == {
            "targets": "min-max",
            "prior": "l2-avg",
            "chosen_weight": 0.1,
            "n_recognised": 2,
            "median_rel_error": results["a"]["box"].median_rel_error,
        }
        tv = json.loads(str(z["a/priors/tv 0.1/settings"]))
        assert tv["priors"] == {"tv": 0.1} and tv["steps"] == QUICK_STEPS
        assert np.array_equal(z["a/priors/tv 0.1/images"], effects["tv 0.1"].image.numpy())
    assert [p.name for p in path.parent.iterdir()] == ["inv.npz"]  # no temporary file left
