"""The judges: a panel no inversion may use, and the verdicts they give on saved image sets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from nnspaces.augment import Moves, random_moves
from nnspaces.data import Dataset
from nnspaces.inversion import judges as J
from nnspaces.inversion import verdicts as V
from nnspaces.inversion.api import invert
from nnspaces.inversion.crosscheck import cross_check
from nnspaces.inversion.imagesets import save_inversions
from nnspaces.inversion.natural import natural_preimages
from nnspaces.inversion.results import evaluate_images
from nnspaces.inversion.robust import Ensemble, Jittered, robust_preimages
from nnspaces.models import NetworkSpec, register_network


def tiny_data(n_per_class: int = 6, seed: int = 0) -> Dataset:
    """Ten classes, each a bright square at its own place on a dark 28 x 28 image, plus noise."""
    g = torch.Generator().manual_seed(seed)
    xs, ys = [], []
    for c in range(10):
        base = torch.zeros(1, 28, 28)
        r, col = 2 + 8 * (c // 4), 2 + 6 * (c % 4)
        base[:, r : r + 6, col : col + 6] = 1.0
        for _ in range(n_per_class):
            xs.append((base + 0.05 * torch.rand(1, 28, 28, generator=g)).clamp(0, 1))
            ys.append(c)
    x, y = torch.stack(xs), torch.tensor(ys)
    return Dataset("tiny", x, y, x[:0], y[:0], x[::3], y[::3], "squares")


class Mean(J.Judge):
    """A judge of known probabilities, for the verdict arithmetic."""

    def __init__(self, probs: torch.Tensor):
        self.name, self.description, self.probs = "judge-fixed", "fixed", probs

    def probabilities(self, images):
        return self.probs[: len(images)]


def test_knn_reads_training_images_as_their_labels_and_p_is_the_vote_share():
    data = tiny_data()
    judge = J.KNNJudge(data, k=3)
    assert judge.held_out_accuracy == 1.0
    p = judge.probabilities(data.x_train)
    assert torch.allclose(p.sum(1), torch.ones(len(p), dtype=p.dtype))
    assert torch.equal(judge.read(data.x_train), data.y_train)
    assert set(p.flatten().tolist()) <= {0.0, 1 / 3, 2 / 3, 1.0}


def test_knn_breaks_a_tie_by_the_nearest_neighbour():
    """Two classes with one vote each: the class of the nearest image wins, whichever order
    the classes are numbered in."""
    x = torch.zeros(2, 1, 28, 28)
    x[1] += 1.0
    for labels in ([0, 1], [1, 0]):
        y = torch.tensor(labels)
        data = Dataset("two", x, y, x[:0], y[:0], x, y, "two")
        judge = J.KNNJudge(data, k=2)
        near_second = torch.full((1, 1, 28, 28), 0.9)
        assert judge.read(near_second).tolist() == [labels[1]]
        assert judge.probabilities(near_second)[0, labels[1]] == 0.5


def test_knn_refuses_a_bad_k():
    with pytest.raises(ValueError, match="k=0 must be an integer in"):
        J.KNNJudge(tiny_data(), k=0)


def test_no_inversion_path_takes_a_judge():
    cnn = J.JudgeCNN()
    with pytest.raises(ValueError, match="is a judge"):
        invert(cnn, "probability", method="box", start=torch.rand(1, 1, 28, 28), classes=[0])
    with pytest.raises(ValueError, match="is a judge"):
        cross_check(torch.rand(2, 1, 28, 28), {"judge": cnn}, [0, 1])
    with pytest.raises(ValueError, match="judge-cnn is a judge"):
        cross_check(torch.rand(2, 1, 28, 28), {"judge-cnn": nn.Flatten()}, [0, 1])
    with pytest.raises(ValueError, match="is a judge"):
        natural_preimages({"a": nn.Linear(784, 10), "b": cnn}, "a", data=tiny_data())
    with pytest.raises(ValueError, match="is a judge"):
        Jittered(nn.Sequential(nn.Flatten(), cnn))
    with pytest.raises(ValueError, match="is a judge"):
        Ensemble([cnn])
    with pytest.raises(ValueError, match="names starting 'judge-'"):
        register_network(NetworkSpec("judge-mine", J.JudgeCNN, (1, 28, 28), 10, "x", "head"))


def test_verdicts_count_each_judge_the_panel_and_the_box():
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], dtype=torch.float64)
    other = torch.tensor([[0.7, 0.3], [0.6, 0.4], [0.1, 0.9]], dtype=torch.float64)
    a, b = Mean(probs), Mean(other)
    b.name = "judge-other"
    images = torch.full((3, 1, 2, 2), 0.5)
    images[2, 0, 0, 0] = 1.5  # one pixel of four outside [0, 1]
    frame = V.verdicts(images, [0, 1, 0], {"judge-fixed": a, "judge-other": b})
    assert frame["judge-fixed"].tolist() == [0, 1, 0]
    assert frame["judge-other"].tolist() == [0, 0, 1]
    assert frame["judge-fixed p"].tolist() == [0.9, 0.8, 0.6]
    assert frame["every judge"].tolist() == [True, False, False]
    assert frame["inside"].tolist() == [1.0, 1.0, 0.75]
    frame = V.verdicts(images, [0, 1, 0], {"judge-fixed": a})
    assert frame["every judge"].tolist() == [True, True, True]
    assert frame["digit and inside"].tolist() == [True, True, False]


def test_an_image_with_nan_is_read_by_no_judge():
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1]], dtype=torch.float64)
    images = torch.zeros(2, 1, 2, 2)
    images[1, 0, 0, 0] = float("nan")
    frame = V.verdicts(images, [0, 0], {"judge-fixed": Mean(probs)})
    assert frame["judge-fixed"].tolist() == [0, -1] and frame["judge-fixed p"].tolist() == [0.9, 0]
    assert frame["made"].tolist() == [True, False]  # a failed solve made no image to judge


def test_a_network_cannot_sit_on_the_panel():
    with pytest.raises(TypeError, match="is not a judge"):
        V.verdicts(torch.zeros(1, 1, 28, 28), [0], {"fcnn1": nn.Sequential()})


def test_every_saved_set_is_judged_with_its_classes(tmp_path):
    data = tiny_data()
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    imgs = data.x_train[[0, 6, 12]]
    r = evaluate_images(model, imgs, torch.zeros(3, 10), [0, 1, 2], method="box", network="m")
    path = save_inversions({"m": {"box": r}}, tmp_path / "x.npz", extra={"m/extra": r})
    frame = V.judge_file(path, {"judge-knn": J.KNNJudge(data, k=1)})
    assert sorted(frame["set"].unique()) == ["m/box", "m/extra"]
    assert frame["digit"].tolist() == [0, 1, 2, 0, 1, 2] and frame["every judge"].all()
    summary = V.verdict_summary(frame)
    assert summary["every judge"].tolist() == [3, 3] and summary["images"].tolist() == [3, 3]
    assert summary["network"].tolist() == ["m", "m"]


def test_summary_sums_and_averages_per_set():
    frame = pd.DataFrame(
        {
            "set": ["a", "a", "b"],
            "network": ["n", "n", "n"],
            "digit": [0, 1, 2],
            "inside": [1.0, 0.5, 1.0],
            "judge-x": [0, 0, 2],
            "judge-x p": [0.9, 0.2, 0.7],
            "every judge": [True, False, True],
            "digit and inside": [True, False, True],
        }
    )
    s = V.verdict_summary(frame).set_index("set")
    assert s.loc["a", "judge-x"] == 1 and s.loc["b", "judge-x"] == 1
    assert s.loc["a", "judge-x p"] == pytest.approx(0.55) and s.loc["a", "inside"] == 0.75


def test_unreadable_or_classless_files_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot read image sets from .*bad.npz"):
        V.image_sets(bad)
    old = tmp_path / "old.npz"
    np.savez(old, **{"m/box/images": np.zeros((1, 1, 2, 2)), "m/box/targets": np.zeros((1, 2))})
    with pytest.raises(ValueError, match="set 'm/box' has no classes"):
        V.image_sets(old)


def test_the_cnn_judge_is_trained_once_then_read_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setitem(J.CNN_RECIPE, "epochs", 2)
    data = tiny_data()
    first = J.CNNJudge(data, cache_dir=tmp_path, progress=False)
    assert 0.0 <= first.held_out_accuracy <= 1.0 and first.path.exists()

    def no_training(*a, **k):
        raise AssertionError("trained again")

    monkeypatch.setattr(J, "_train_cnn", no_training)
    again = J.CNNJudge(data, cache_dir=tmp_path, progress=False)
    assert again.held_out_accuracy == first.held_out_accuracy
    x = data.x_test
    assert torch.equal(again.probabilities(x), first.probabilities(x))
    with pytest.raises(AssertionError, match="trained again"):  # another seed: another key
        J.CNNJudge(data, seed=1, cache_dir=tmp_path, progress=False)
    with pytest.raises(AssertionError, match="trained again"):  # another recipe: another key
        monkeypatch.setitem(J.CNN_RECIPE, "lr", 1e-2)
        J.CNNJudge(data, cache_dir=tmp_path, progress=False)
    monkeypatch.setitem(J.CNN_RECIPE, "lr", 1e-3)
    wider = J.JudgeCNN.__init__

    def widened(self, n_classes=10):
        wider(self, n_classes)
        self.head[1] = nn.Linear(32 * 7 * 7, 256)
        self.head[3] = nn.Linear(256, n_classes)

    monkeypatch.setattr(J.JudgeCNN, "__init__", widened)
    with pytest.raises(AssertionError, match="trained again"):  # another architecture
        J.CNNJudge(data, cache_dir=tmp_path, progress=False)


def test_a_corrupt_judge_checkpoint_is_retrained_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setitem(J.CNN_RECIPE, "epochs", 1)
    data = tiny_data()
    path = J.CNNJudge(data, cache_dir=tmp_path, progress=False).path
    path.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="unusable"):
        judge = J.CNNJudge(data, cache_dir=tmp_path, progress=False)
    assert judge.probabilities(data.x_test).shape == (len(data.x_test), 10)


def test_the_cnn_judge_learns_and_reads_moved_digits(tmp_path, monkeypatch):
    """Trained with random moves, it reads the squares when they are shifted too."""
    monkeypatch.setitem(J.CNN_RECIPE, "epochs", 15)
    data = tiny_data(n_per_class=10)
    judge = J.CNNJudge(data, cache_dir=tmp_path, progress=False)
    assert judge.held_out_accuracy == 1.0
    moved = random_moves(data.x_test, Moves(2.0, 0.0, 0.0), torch.Generator().manual_seed(1))
    assert (judge.read(moved) == data.y_test).double().mean() >= 0.9


def test_a_cnn_judge_is_refused_by_invert_through_get_judges(tmp_path, monkeypatch):
    monkeypatch.setitem(J.CNN_RECIPE, "epochs", 1)
    panel = J.get_judges(tiny_data(), cache_dir=tmp_path, progress=False)
    assert list(panel) == ["judge-cnn", "judge-knn"]
    with pytest.raises(ValueError, match="is a judge"):
        invert(panel["judge-cnn"].model, "min-max", method="box", data=tiny_data())


def test_zero_moves_are_the_identity_and_draws_repeat():
    x = torch.rand(4, 1, 28, 28)
    g = torch.Generator().manual_seed(0)
    assert torch.allclose(random_moves(x, Moves(0, 0, 0), g), x, atol=1e-5)
    a = random_moves(x, Moves(), torch.Generator().manual_seed(3))
    b = random_moves(x, Moves(), torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and not torch.allclose(a, x, atol=1e-3)


def test_a_shift_moves_the_centre_of_mass_by_at_most_the_bound():
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 12:16, 12:16] = 1
    moved = random_moves(x, Moves(shift=3.0, angle=0, scale=0), torch.Generator().manual_seed(0))
    grid = torch.arange(28.0)
    cx = (moved.sum(2).squeeze(1) * grid).sum(1) / moved.sum((1, 2, 3))
    assert (cx - 13.5).abs().max() <= 3.0 + 1e-4 and (cx - 13.5).abs().max() >= 2.0


def test_moves_refuse_bad_bounds():
    with pytest.raises(ValueError, match="scale=1.5 must be < 1"):
        Moves(scale=1.5)
    with pytest.raises(ValueError, match="shift=-1 must be a finite number"):
        Moves(shift=-1)


def test_jittered_averages_moved_copies_and_ensemble_averages_log_probabilities():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    x = torch.rand(3, 1, 28, 28)
    still = Jittered(model, Moves(0, 0, 0), copies=4)
    assert torch.allclose(still(x), model(x), atol=1e-5)
    moving = Jittered(model, copies=4, seed=2)
    first, second = moving(x), moving(x)
    assert not torch.allclose(first, second)  # fresh draws at every call
    assert torch.allclose(Jittered(model, copies=4, seed=2)(x), first)  # from the seed again
    other = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    both = Ensemble([model, other])(x)
    expected = (torch.log_softmax(model(x), 1) + torch.log_softmax(other(x), 1)) / 2
    assert torch.allclose(both, expected)


def test_robust_preimages_reach_the_probability_target_inside_the_box():
    torch.manual_seed(0)
    data = tiny_data()
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    model[1].weight.data *= 10  # outputs that pixels move as much as a trained network's
    run = robust_preimages(
        model, "probability", data=data, ingredients=("jitter", "prior"),
        steps={"search": 60, "polish": 60},
    )  # fmt: skip
    r = run.result
    p = torch.softmax(model(r.image), 1)[torch.arange(10), torch.tensor(r.classes)]
    assert (p >= 0.9).all() and r.success.all()
    assert r.image.min() >= 0 and r.image.max() <= 1
    assert r.settings["ingredients"] == ["jitter", "prior"]


def test_robust_preimages_refuse_what_does_not_apply():
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    with pytest.raises(ValueError, match="unknown ingredient 'noise'"):
        robust_preimages(model, "probability", data=tiny_data(), ingredients=("noise",))
    with pytest.raises(ValueError, match="needs probability targets"):
        robust_preimages(model, "min-max", data=tiny_data(), ingredients=("ensemble",))


def test_the_cnn_judge_reads_float64_images(tmp_path, monkeypatch):
    """The exact and Newton pre-images are float64: a judge reads them as they are."""
    monkeypatch.setitem(J.CNN_RECIPE, "epochs", 1)
    judge = J.CNNJudge(tiny_data(), cache_dir=tmp_path, progress=False)
    x = tiny_data().x_test
    assert torch.allclose(judge.probabilities(x.double()), judge.probabilities(x))


def test_a_run_saves_judges_and_verdicts_beside_every_image_file(tmp_path, monkeypatch):
    """``ctx.save_inversions`` writes the npz, one verdict row per image, the counts per set in
    the metrics (what the sweep and the report read) and the judges' accuracies."""
    import json

    from nnspaces.runner.config import RunConfig
    from nnspaces.runner.numbers import read_metrics, verdict_table

    monkeypatch.setitem(J.CNN_RECIPE, "epochs", 1)
    monkeypatch.setattr(J, "CACHE_DIR", tmp_path / "cache")
    ctx = RunConfig.from_profile("smoke", out_dir=str(tmp_path / "run")).context()
    ctx._data = tiny_data()
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    imgs = torch.cat([tiny_data().x_train[[0, 6]], torch.full((1, 1, 28, 28), 2.0)])
    r = evaluate_images(model, imgs, torch.zeros(3, 10), [0, 1, 2], method="box", network="m")
    verdicts = ctx.save_inversions("mine", {"m": {"box": r}})
    out = tmp_path / "run"
    assert (out / "mine.npz").is_file() and (out / "mine.verdicts.csv").is_file()
    assert verdicts.frame["all_inside"].tolist() == [True, True, False]
    assert 2 not in verdicts.recognised("m/box")
    saved = json.loads((out / "metrics" / "verdicts_mine.json").read_text())
    assert [j["name"] for j in saved["judges"]] == ["judge-cnn", "judge-knn"]
    assert saved["sets"]["m/box"]["images"] == 3
    table = verdict_table(read_metrics(out))
    assert table["mine: box"]["m"] == saved["sets"]["m/box"]["digit and inside"] / 3
    assert json.loads((out / "judges.json").read_text())["dataset"] == "tiny"
    with pytest.raises(ValueError, match="no image set 'm/other'"):
        verdicts.recognised("m/other")


def test_describe_separates_digits_pushes_outside_the_box_and_non_digits():
    frame = pd.DataFrame(
        {
            "set": ["n/a"] * 10 + ["n/b"] * 10 + ["n/c"] * 10,
            "network": ["n"] * 30,
            "digit": list(range(10)) * 3,
            "inside": [1.0] * 10 + [0.9] * 10 + [1.0] * 10,
            "judge-x": list(range(10)) * 2 + [0] * 10,
            "judge-x p": [1.0] * 30,
            "every judge": [True] * 20 + [i == 0 for i in range(10)],
            "digit and inside": [True] * 10 + [False] * 10 + [i == 0 for i in range(10)],
        }
    )
    text = V.Verdicts(frame).describe()
    assert "inside [0, 1]: `a` 10/10;" in text
    assert "pixels outside [0, 1]: `b` 10/10;" in text
    assert "read as the digits by every judge in under 90% of the images: `c` 1/10." in text
    nine = frame.copy()
    nine.loc[9, ["every judge", "digit and inside"]] = False  # 9 of 10 still count as digits
    assert "inside [0, 1]: `a` 9/10;" in V.Verdicts(nine).describe()
    eight = nine.copy()
    eight.loc[8, ["every judge", "digit and inside"]] = False
    assert "images: `a` 8/10, `c` 1/10." in V.Verdicts(eight).describe()
    # a set whose every solve failed (all NaN) is not "rejected by the judges": none was made
    failed = frame.assign(made=[True] * 20 + [False] * 10)
    text = V.Verdicts(failed).describe()
    assert "under 90% of the images: none; no image made (every solve failed): `c` 0/10." in text
    assert V.Verdicts(failed).table().set_index("set").loc["n/c", "made"] == "0/10"
