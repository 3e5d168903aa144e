"""The paper's claims ledger: every claim of nnspaces.paper.CLAIMS has a check, and each
verdict follows the run's numbers (holds, does not, or not testable on another dataset)."""

from __future__ import annotations

from nnspaces import paper
from nnspaces.runner.ledger import CHECKS, FAILS, HOLDS, UNTESTABLE, VERDICTS, paper_ledger


def _fig1(condition: float, accuracy: float, dataset: str = "mnist-embedded") -> dict:
    return {
        "dataset": dataset,
        "network": "fcnn1",
        "test_accuracy": accuracy,
        "epochs": 1,
        "singular_values": [1.0],
        "condition_number": condition,
        "energy_kept_class_means": [0.1],
    }


def _row(metrics: dict, claim_id: str) -> dict:
    return paper_ledger(metrics).set_index("id").loc[claim_id].to_dict()


def test_every_claim_of_the_paper_has_a_check_and_a_verdict():
    assert [c.id for c in paper.CLAIMS] == list(CHECKS)
    table = paper_ledger({})
    assert set(table.verdict) <= set(VERDICTS) and len(table) == len(paper.CLAIMS)
    assert set(table.verdict) == {UNTESTABLE}  # no metrics: nothing to test


def test_a_number_of_the_paper_holds_within_its_tolerance_and_only_on_mnist():
    assert _row({"fig1": _fig1(7.5, 0.915)}, "condition.fcnn1")["verdict"] == HOLDS
    assert _row({"fig1": _fig1(3.74, 0.89)}, "condition.fcnn1")["verdict"] == FAILS
    row = _row({"fig1": _fig1(3.74, 0.89)}, "accuracy.fcnn1")
    assert row["verdict"] == FAILS and row["this_run"] == "89.0%"
    assert (
        _row({"fig1": _fig1(7.22, 0.92, "fashion-mnist")}, "accuracy.fcnn1")["verdict"]
        == UNTESTABLE
    )


def test_conv_kernels_well_conditioned_follows_the_largest():
    def fig2(worst):
        rows = [
            {"layer": "conv1", "condition_number_trained": worst},
            {"layer": "layer1.0.conv1", "condition_number_trained": 1.07},
        ]
        return {
            "fig2": {
                "network": "resnet18",
                "test_accuracy": 0.99,
                "epochs": 1,
                "layer": "layer1.0.conv1",
                "singular_values": [1.0],
                "condition_number": 1.07,
                "per_layer": rows,
            }
        }

    assert _row(fig2(9.9), "conv.well_conditioned")["verdict"] == HOLDS
    row = _row(fig2(12.5), "conv.well_conditioned")
    assert row["verdict"] == FAILS and "12.5 (conv1" in row["this_run"]
