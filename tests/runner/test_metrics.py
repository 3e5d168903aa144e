"""The metrics contract: what the notebooks save (nnspaces.runner.metrics' dataclasses through
RunContext.save_metrics) is what key_numbers and inversion_table read back, number by number."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from nnspaces import paper
from nnspaces.inversion import InversionResult, evaluate_images
from nnspaces.inversion.natural import NaturalPreimages
from nnspaces.runner.config import RunConfig
from nnspaces.runner.metrics import (
    Fig1Metrics,
    Fig2Metrics,
    Fig3Metrics,
    Lesson4Metrics,
    Lesson5Metrics,
    Lesson6Metrics,
    MetricsLayoutError,
)
from nnspaces.runner.numbers import KeyNumber, inversion_table, key_numbers, verdict_table

torch.manual_seed(0)
MODEL = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))


def result(network: str, method: str, seed: int, *, nan_rows: int = 0) -> InversionResult:
    """A real InversionResult of a tiny 16 -> 3 network (distinct errors for each seed);
    ``nan_rows`` classes failed (an exact method's NaN rows)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(3, 1, 4, 4, generator=g)
    images[1 : 1 + nan_rows, 0, 0, 0] = float("nan")
    targets = 1 + torch.rand(3, 3, generator=g)
    return evaluate_images(MODEL, images, targets, [0, 1, 2], method=method, network=network)


def natural(network: str, seed: int) -> NaturalPreimages:
    frontier = [{"weight": 0.1, "median_rel_error": 0.987654, "n_recognised": 9}]
    return NaturalPreimages(
        network, "min-max", "l2-avg", frontier, 0.1, result(network, "box", seed), n_recognised=9
    )


def fig1(network: str = "fcnn1", **given) -> Fig1Metrics:
    values = {
        "test_accuracy": 0.9123,
        "epochs": 1,
        "singular_values": np.array([4.5, 3.0, 0.615]),
        "condition_number": 7.3141,
        "energy_kept_class_means": np.full(10, 0.25),
    }
    return Fig1Metrics(network, **{**values, **given})


def fig2(**given) -> Fig2Metrics:
    per_layer = [{"layer": "conv1", "shape": [64, 1, 3, 3], "condition_number_trained": 3.5}]
    values = {
        "test_accuracy": 0.9876,
        "epochs": 1,
        "layer": "layer1.0.conv1",
        "singular_values": np.linspace(2.0, 1.9, 9),
        "condition_number": 1.0712,
        "per_layer": per_layer,
    }
    return Fig2Metrics("resnet18", **{**values, **given})


def lesson5() -> Lesson5Metrics:
    """Lesson 5's metrics: resnet18's natural pre-images and one prior's effect."""
    return Lesson5Metrics(
        natural={"resnet18": natural("resnet18", 5)},
        priors={"tv 0.1": result("resnet18", "box", 8)},
        priors_recognised={"tv 0.1": 4},
    )


def fig3() -> tuple[Fig3Metrics, dict]:
    results = {
        "fcnn5": {"descent": result("fcnn5", "descent", 1), "min-img": result("fcnn5", "m", 2)},
        "resnet18": {
            "descent": result("resnet18", "descent", 3),
            "exact": result("resnet18", "exact", 4, nan_rows=1),
        },
    }
    m = Fig3Metrics(
        accuracy={"fcnn5": 0.9654, "resnet18": 0.5},
        results=results,
        cross_model={"fcnn5": {"descent": {"resnet18": 7}}},
    )
    return m, results


def json_roundtrip(metrics) -> dict:
    """What a notebook's metrics look like read back from their JSON file."""
    return json.loads(json.dumps(metrics.to_dict()))


def by_reference(rows: list[KeyNumber]) -> tuple[dict[str, KeyNumber], dict[str, KeyNumber]]:
    """The rows of key_numbers by network: (accuracies, condition numbers)."""
    acc = {n: r for n, r in zip(paper.ACCURACY, rows, strict=False)}
    cond = {n: r for n, r in zip(paper.CONDITION_NUMBER, rows[len(acc) :], strict=True)}
    for n, r in acc.items():
        assert r.reference == paper.ACCURACY[n] and n in r.label and r.percent
    for n, r in cond.items():
        assert r.reference == paper.CONDITION_NUMBER[n] and n in r.label and not r.percent
    return acc, cond


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    config = RunConfig(
        "smoke",
        n_train=500,
        n_test=200,
        epochs={"fcnn1": 1, "fcnn5": 1, "resnet18": 1},
        out_dir=str(out),
    )
    return config.context()


def test_saved_metrics_carry_the_profile_the_data_and_the_values(context):
    saved_by = (fig1(), fig2(), fig3()[0], lesson4(), lesson5())
    paths = [context.save_metrics(m) for m in saved_by]
    assert [p.name for p in paths] == [
        "fig1.json",
        "fig2.json",
        "fig3.json",
        "lesson4.json",
        "lesson5.json",
    ]
    assert all(p.parent == context.out_dir / "metrics" for p in paths)
    saved = {p.stem: json.loads(p.read_text()) for p in paths}
    info = context.data.info()
    assert set(info) == {"dataset", "n_train", "n_val", "n_test", "source"}
    for m in saved.values():
        assert m["profile"] == "smoke"
        assert {k: m[k] for k in info} == info
    assert saved["fig1"]["network"] == "fcnn1" and saved["fig1"]["test_accuracy"] == 0.9123
    assert saved["fig1"]["singular_values"] == [4.5, 3.0, 0.615]
    assert saved["fig1"]["condition_number"] == 7.3141
    assert saved["fig2"]["layer"] == "layer1.0.conv1"
    assert saved["fig2"]["per_layer"][0]["condition_number_trained"] == 3.5
    assert saved["fig3"]["networks"]["fcnn5"]["cross_model"] == {"descent": {"resnet18": 7}}

    acc, cond = by_reference(key_numbers(saved))
    assert (acc["fcnn1"].value, acc["fcnn1"].source) == (0.9123, "fig1.json")
    assert (acc["fcnn5"].value, acc["fcnn5"].source) == (0.9654, "fig3.json: networks / fcnn5")
    assert (acc["resnet18"].value, acc["resnet18"].source) == (0.9876, "fig2.json")
    assert (cond["fcnn1"].value, cond["fcnn1"].source) == (7.3141, "fig1.json")
    assert (cond["resnet18"].value, cond["resnet18"].source) == (1.0712, "fig2.json")


def test_key_numbers_text_percent_and_significant_digits():
    metrics = {"fig1": json_roundtrip(fig1()), "fig2": json_roundtrip(fig2())}
    acc, cond = by_reference(key_numbers(metrics))
    assert acc["fcnn1"].text == "91.2%" and acc["resnet18"].text == "98.8%"
    assert cond["fcnn1"].text == "7.31" and cond["resnet18"].text == "1.07"
    assert acc["fcnn5"].value is None and acc["fcnn5"].text == "missing"


def test_key_numbers_carry_their_network_kind_and_layer():
    """What the sweep's aggregate groups by, carried, not parsed back from the label."""
    acc, cond = by_reference(key_numbers({"fig1": json_roundtrip(fig1())}))
    for net, k in acc.items():
        assert (k.network, k.kind, k.name) == (net, "test accuracy", "")
    for net, k in cond.items():
        layer = paper.FIGURE_LAYER[net]
        name = f"layer {layer}" if layer.isdigit() else layer
        assert (k.network, k.kind, k.name) == (net, "condition number", name)
        assert k.label == f"{net} {name} condition number"
    assert cond["fcnn1"].name == "layer 1"


def test_fig1_and_fig2_accuracies_come_before_fig3s():
    m3 = json_roundtrip(fig3()[0])
    m3["networks"]["fcnn1"] = {"test_accuracy": 0.11, "methods": {}}
    metrics = {"fig1": json_roundtrip(fig1()), "fig2": json_roundtrip(fig2()), "fig3": m3}
    acc, _ = by_reference(key_numbers(metrics))
    assert acc["fcnn1"].value == 0.9123  # not fig3's fcnn1
    assert acc["resnet18"].value == 0.9876  # fig2's, not fig3's 0.5
    assert acc["fcnn5"].value == 0.9654


def test_a_file_about_another_network_is_not_read_as_the_papers_layer():
    acc, cond = by_reference(key_numbers({"fig1": json_roundtrip(fig1("fcnn5"))}))
    assert cond["fcnn1"].value is None and cond["fcnn1"].text == "missing"
    assert acc["fcnn1"].value is None
    assert (acc["fcnn5"].value, acc["fcnn5"].source) == (0.9123, "fig1.json")


def test_missing_files_give_missing_numbers_and_an_empty_table():
    rows = key_numbers({})
    assert len(rows) == len(paper.ACCURACY) + len(paper.CONDITION_NUMBER)
    for r in rows:
        assert (r.value, r.text, r.source) == (None, "missing", "no metrics file has it")
    assert inversion_table(None) == ([], {})
    assert inversion_table({}) == ([], {})


def test_inversion_table_reads_each_methods_median_on_each_network():
    m, results = fig3()
    l5 = lesson5()
    networks, table = inversion_table(json_roundtrip(m), json_roundtrip(l5))
    assert networks == ["fcnn5", "resnet18"]
    assert table["descent"] == {
        "fcnn5": pytest.approx(results["fcnn5"]["descent"].median_rel_error),
        "resnet18": pytest.approx(results["resnet18"]["descent"].median_rel_error),
    }
    assert table["descent"]["fcnn5"] != pytest.approx(table["descent"]["resnet18"])
    assert table["min-img"] == {
        "fcnn5": pytest.approx(results["fcnn5"]["min-img"].median_rel_error)
    }
    assert table["exact"] == {"resnet18": None}  # a NaN row: no finite median
    nat = l5.natural["resnet18"].result.median_rel_error
    assert table["natural pre-images"] == {"resnet18": pytest.approx(nat)}
    assert list(table) == ["descent", "min-img", "exact", "natural pre-images"]
    # without lesson 5's file: fig3's methods only; lesson 5 alone adds its networks
    assert "natural pre-images" not in inversion_table(json_roundtrip(m))[1]
    assert inversion_table(None, json_roundtrip(l5)) == (
        ["resnet18"],
        {"natural pre-images": {"resnet18": pytest.approx(nat)}},
    )


def test_fig3_json_keeps_each_networks_accuracy_results_and_per_class_errors():
    m, results = fig3()
    d = json_roundtrip(m)
    assert d["targets"] == "min-max"
    fcnn5 = d["networks"]["fcnn5"]
    assert fcnn5["test_accuracy"] == 0.9654 and "natural" not in fcnn5
    descent = fcnn5["methods"]["descent"]
    assert descent["rel_error"] == pytest.approx(results["fcnn5"]["descent"].rel_error.tolist())
    assert descent["classes"] == [0, 1, 2] and descent["network"] == "fcnn5"
    exact = d["networks"]["resnet18"]["methods"]["exact"]
    assert exact["rel_error"][1] is None and exact["median_rel_error"] is None


def lesson4() -> Lesson4Metrics:
    return Lesson4Metrics(
        results={"fcnn5": {"exact": result("fcnn5", "exact", 9, nan_rows=1)}},
        null_space={"fcnn1": result("fcnn1", "null-space samples", 10)},
        walk=result("fcnn5", "exact", 11, nan_rows=2),
    )


def test_lesson4_json_keeps_exact_results_null_space_samples_and_the_walk():
    m = lesson4()
    d = strict_json(m)
    assert list(d["networks"]) == ["fcnn5", "fcnn1"]
    exact = d["networks"]["fcnn5"]["methods"]["exact"]
    assert exact["rel_error"][1] is None
    assert exact["rel_error"][0] == pytest.approx(m.results["fcnn5"]["exact"].rel_error[0])
    assert d["networks"]["fcnn5"]["null_space"] is None
    samples = d["networks"]["fcnn1"]["null_space"]
    assert samples["rel_error"] == pytest.approx(m.null_space["fcnn1"].rel_error.tolist())
    assert d["networks"]["fcnn1"]["methods"] == {}
    assert d["walk"]["rel_error"][1:] == [None, None] and d["walk"]["network"] == "fcnn5"


def test_lesson5_json_keeps_natural_preimages_and_prior_effects():
    m = lesson5()
    d = strict_json(m)
    assert d["networks"]["resnet18"]["natural"]["frontier"][0]["median_rel_error"] == 0.987654
    assert d["networks"]["resnet18"]["natural"]["n_recognised"] == 9
    run = d["priors"]["runs"]["tv 0.1"]
    assert d["priors"]["network"] == "resnet18" and run["recognised_by_others"] == 4
    assert run["rel_error"] == pytest.approx(m.priors["tv 0.1"].rel_error.tolist())


def strict_json(metrics) -> dict:
    """The JSON a metrics object writes, refusing NaN and Infinity (not JSON: browsers and
    jq reject them)."""
    text = json.dumps(metrics.to_dict())

    def refuse(token: str):
        raise AssertionError(f"{token} written to JSON")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_in_lists_become_null():
    d = strict_json(fig1(singular_values=[2.0, math.nan, math.inf]))
    assert d["singular_values"] == [2.0, None, None]
    assert strict_json(fig2(singular_values=[math.nan]))["singular_values"] == [None]


@pytest.mark.parametrize(
    "metrics",
    [
        pytest.param(lambda: fig1(condition_number=math.inf), id="fig1-condition-inf"),
        pytest.param(lambda: fig2(test_accuracy=math.nan), id="fig2-accuracy-nan"),
        pytest.param(
            lambda: Lesson5Metrics(
                natural={
                    "fcnn1": NaturalPreimages(
                        "fcnn1", "min-max", "l2-avg", [], 0.1, result("fcnn1", "box", 6, nan_rows=2)
                    )
                },
            ),
            id="lesson5-natural-median-inf",
        ),
    ],
)
def test_non_finite_scalars_become_null(metrics):
    strict_json(metrics())


def test_lesson6_json_keeps_counts_probabilities_walks_and_heads():
    r = result("vit", "lm", 3, nan_rows=1)
    r.settings["residual"] = "log-odds"
    r.success[:] = [True, False, True]
    m = Lesson6Metrics(
        accuracy={"vit": 0.95},
        level=0.9,
        probability={"vit": {"lm log-odds": r}},
        not_applicable={"vit": {"exact": "not a Linear/SELU stack"}},
        walk={
            "fcnn5": {
                "all": {
                    "k": 2,
                    "success": np.array([True, False]),
                    "reasons": ["", "layer 2: below SELU's range"],
                    "mean_rms_difference": float("nan"),
                    "n": np.int64(1),
                }
            }
        },
        heads=[{"layer": "encoder.layers.0", "head": 0, "rank": 16, "condition_number": 2.5}],
    )
    d = strict_json(m)
    row = d["probability"]["vit"]["lm log-odds"]
    assert row["n_success"] == 2 and row["success"] == [True, False, True]
    assert row["prob"][1] is None and row["prob"][0] == pytest.approx(float(r.prob[0]))
    assert row["residual"] == "log-odds" and row["classes"] == [0, 1, 2]
    assert row["median_prob"] is None  # the NaN row (no image) makes the median NaN
    walk = d["walk"]["fcnn5"]["all"]
    assert walk["success"] == [True, False] and walk["n"] == 1 and type(walk["n"]) is int
    assert walk["mean_rms_difference"] is None and walk["reasons"][1].startswith("layer 2")
    assert d["not_applicable"]["vit"]["exact"] == "not a Linear/SELU stack"
    assert d["heads"][0]["condition_number"] == 2.5 and d["level"] == 0.9
    assert Lesson6Metrics.name == "lesson6"


# --------------------------------------------------------------------------- reading back


def lesson6() -> Lesson6Metrics:
    return Lesson6Metrics(
        accuracy={"vit": 0.95},
        level=0.9,
        probability={"vit": {"lm log-odds": result("vit", "lm", 3)}},
        not_applicable={"vit": {"exact": "not a Linear/SELU stack"}},
        min_max={"vit": {"lm": result("vit", "lm", 4)}},
        walk={"fcnn5": {"all": {"k": 2, "success": [True, False]}}},
        heads=[{"layer": "encoder.layers.0", "head": 0, "rank": 16, "condition_number": 2.5}],
    )


def test_every_field_written_is_read_back_as_its_dataclass():
    """from_dict is to_dict's inverse: every field holds what the file has for it (results
    as the dicts written), and the keys save_metrics adds beside them are not fields."""
    saved = {"profile": "smoke", "dataset": "mnist-embedded", "n_train": 500}
    for m in (fig1(), fig2(), lesson6()):
        d = strict_json(m)
        back = type(m).from_dict(saved | d)
        assert isinstance(back, type(m))
        assert {f.name: getattr(back, f.name) for f in dataclasses.fields(m)} == d
    d = strict_json(fig3()[0])
    back = Fig3Metrics.from_dict(saved | d)
    nets = d["networks"]
    assert back.accuracy == {"fcnn5": 0.9654, "resnet18": 0.5}
    assert back.results == {n: e["methods"] for n, e in nets.items()}
    assert back.cross_model == {"fcnn5": {"descent": {"resnet18": 7}}, "resnet18": {}}
    assert back.targets == "min-max"
    d = strict_json(lesson4())
    back = Lesson4Metrics.from_dict(d)
    assert back.results == {"fcnn5": d["networks"]["fcnn5"]["methods"], "fcnn1": {}}
    assert back.null_space == {"fcnn1": d["networks"]["fcnn1"]["null_space"]}
    assert back.walk == d["walk"] and back.targets == d["targets"]
    d = strict_json(lesson5())
    back = Lesson5Metrics.from_dict(d)
    run = dict(d["priors"]["runs"]["tv 0.1"])
    assert run.pop("recognised_by_others") == 4
    assert back.natural == {"resnet18": d["networks"]["resnet18"]["natural"]}
    assert back.priors == {"tv 0.1": run} and back.priors_recognised == {"tv 0.1": 4}
    assert back.priors_network == "resnet18"


def test_a_missing_optional_field_is_tolerated_and_another_layout_is_named():
    back = Fig2Metrics.from_dict({"network": "resnet18", "test_accuracy": 0.9})
    assert (back.network, back.test_accuracy, back.epochs) == ("resnet18", 0.9, None)
    assert back.per_layer == [] and back.operators == []
    back = Fig3Metrics.from_dict({"networks": {"fcnn5": {"test_accuracy": 0.5}}})
    assert (back.accuracy, back.results, back.cross_model) == (
        {"fcnn5": 0.5},
        {"fcnn5": {}},
        {"fcnn5": {}},
    )
    with pytest.raises(MetricsLayoutError, match=r"fig1\.json does not have the layout .*network"):
        Fig1Metrics.from_dict(strict_json(fig3()[0]))
    with pytest.raises(MetricsLayoutError, match=r"networks/fcnn5/methods is not a dict of dicts"):
        Fig3Metrics.from_dict({"networks": {"fcnn5": {"methods": {"descent": [0.1]}}}})
    with pytest.raises(MetricsLayoutError, match=r"lesson5\.json holds a list, not a dict"):
        Lesson5Metrics.from_dict([1])


def test_a_file_of_another_layout_gives_missing_key_numbers_saying_why():
    rows = key_numbers({"fig1": {"networks": []}, "fig2": json_roundtrip(fig2())})
    acc, cond = by_reference(rows)
    assert acc["fcnn1"].value is None
    assert acc["fcnn1"].source == "no metrics file has it (fig1.json: another layout)"
    assert cond["resnet18"].value == 1.0712  # the other files are still read


def test_verdict_table_reads_the_judges_counts_not_the_networks():
    """Per set and network: the fraction every judge reads as the digit with every pixel in
    [0, 1] ("digit and inside"), not the looser "every judge" count."""
    metrics = {
        "fig3": {"networks": {}},
        "verdicts_inversions": {
            "sets": {
                "fcnn1/exact": {"network": "fcnn1", "images": 10, "every judge": 9,
                                "digit and inside": 2},
                "resnet18/natural": {"network": "resnet18", "images": 4, "every judge": 4,
                                     "digit and inside": 3},
                "vit/empty": {"network": "vit", "images": 0, "digit and inside": 0},
            }
        },
    }  # fmt: skip
    table = verdict_table(metrics)
    assert table["inversions: exact"] == {"fcnn1": 0.2}
    assert table["inversions: natural"] == {"resnet18": 0.75}
    assert table["inversions: empty"] == {"vit": None}
    assert verdict_table({"fig3": {}}) == {}
