"""Claims across a sweep's runs: each claim's k of n per group of runs and subject."""

from __future__ import annotations

from nnspaces.runner.sweep.aggregate import claim_rows, claims_k_of_n


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
