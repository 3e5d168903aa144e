"""Claims across a sweep's runs: each claim's k of n per group of runs and subject."""

from __future__ import annotations

from nnspaces.runner.sweep.aggregate import claim_rows, claims_k_of_n, robustness


def _fig3(best_box: float, dataset: str) -> dict:
    methods = {m: _res(0.84) for m in ("avg-img", "min-img", "avg-min-img")}
    methods |= {f"{m}+training": r for m, r in methods.items()}
    methods["best-box"] = _res(best_box)
    return {"dataset": dataset, "networks": {"fcnn1": {"test_accuracy": 0.9, "methods": methods}}}


def _res(rel: float) -> dict:
    c = list(range(10))
    return {
        "classes": c,
        "rel_error": [rel] * 10,
        "median_rel_error": rel,
        "success": [False] * 10,
        "predicted": c,
        "prob": [0.5] * 10,
    }


def test_k_of_n_per_dataset_claim_and_network():
    rows = []
    for dataset, boxes in (("mnist-embedded", (1e-5, 1e-5, 0.8)), ("fashion-mnist", (0.8, 0.8))):
        for b in boxes:
            rows += [{"dataset": dataset, **r} for r in claim_rows({"fig3": _fig3(b, dataset)})]
    table = {
        (r["dataset"], r["source"], r["claim"], r["subject"]): (r["k"], r["n"])
        for r in claims_k_of_n(rows, ["dataset"])
    }
    assert table[("mnist-embedded", "ours", "fig3.best_box_closer", "fcnn1")] == (2, 3)
    assert table[("fashion-mnist", "ours", "fig3.best_box_closer", "fcnn1")] == (0, 2)
    # the paper's ledger: the claims a run decides (its numbers are for MNIST: not testable
    # on Fashion-MNIST, so not counted there)
    assert table[("mnist-embedded", "paper", "inverse.recognised", "run")] == (3, 3)
    assert table[("mnist-embedded", "paper", "accuracy.fcnn1", "run")] == (0, 3)  # 90% < 92%
    assert not any(k[0] == "fashion-mnist" and k[2].startswith("accuracy.") for k in table)


def test_no_runs_no_claims():
    assert claims_k_of_n([], ["dataset"]) == []


def _kn(rows: list[tuple[str, int, int]]) -> list[dict]:
    return [
        {
            "dataset": d,
            "source": "ours",
            "claim": "c",
            "subject": "fcnn1",
            "says": "s",
            "k": k,
            "n": n,
        }
        for d, k, n in rows
    ]


def test_robustness_names_the_pattern_across_datasets():
    def pattern(rows):
        (row,) = robustness(_kn(rows), ["dataset"])
        return row["pattern"], row["k_of_n"]

    assert pattern([("mnist", 5, 5), ("fashion", 5, 5)])[0] == "holds in every run"
    assert pattern([("mnist", 0, 5), ("fashion", 0, 4)])[0] == "holds in no run"
    split, cells = pattern([("mnist", 5, 5), ("fashion", 0, 5)])
    assert split == "holds in every run of dataset = mnist, in none of dataset = fashion"
    assert cells == {"dataset = mnist": "5 of 5", "dataset = fashion": "0 of 5"}
    # one seed of five failing is not "every run"; it is named as seed-dependent, per dataset
    assert pattern([("mnist", 4, 5), ("fashion", 5, 5)])[0] == (
        "depends on the seed (dataset = mnist)"
    )
    assert pattern([("mnist", 1, 5)])[0] == "depends on the seed (dataset = mnist)"


def test_robustness_from_runs_keeps_each_claim_and_subject_apart():
    rows = []
    for dataset, boxes in (("mnist-embedded", (1e-5, 1e-5)), ("fashion-mnist", (0.8, 0.8))):
        for b in boxes:
            rows += [{"dataset": dataset, **r} for r in claim_rows({"fig3": _fig3(b, dataset)})]
    table = {
        (r["claim"], r["subject"]): r
        for r in robustness(claims_k_of_n(rows, ["dataset"]), ["dataset"])
    }
    closer = table[("fig3.best_box_closer", "fcnn1")]
    assert closer["pattern"] == (
        "holds in every run of dataset = mnist-embedded, in none of dataset = fashion-mnist"
    )
    assert "much closer" in closer["says"]
    # a paper claim decided on MNIST only has no Fashion-MNIST cell
    assert set(table[("accuracy.fcnn1", "run")]["k_of_n"]) == {"dataset = mnist-embedded"}
