"""The paper's numbers: each with a source, and the choices the figures make from them."""

import dataclasses

import pytest

from nnspaces import paper
from nnspaces.inversion import get_method
from nnspaces.models import build_model, network_spec, networks, weight_layers
from nnspaces.training import TrainConfig

PAPER_NETWORKS = ("fcnn1", "fcnn5", "resnet18")


def _references():
    """Every Reference the module holds, at any depth of its dicts."""
    found = {}

    def walk(label, value):
        if isinstance(value, paper.Reference):
            found[label] = value
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(f"{label}[{k!r}]", v)

    for name in dir(paper):
        if not name.startswith("_"):
            walk(name, getattr(paper, name))
    return found


REFERENCES = _references()


def test_the_references_are_found():
    assert {f"ACCURACY[{n!r}]" for n in PAPER_NETWORKS} <= set(REFERENCES)
    assert {"CONDITION_NUMBER['fcnn1']", "CONDITION_NUMBER['resnet18']"} <= set(REFERENCES)


@pytest.mark.parametrize("label", REFERENCES)
def test_every_reference_has_a_source(label):
    ref = REFERENCES[label]
    assert isinstance(ref.source, str) and ref.source.strip()
    assert isinstance(ref.value, int | float) and ref.value > 0
    if ref.notebook is not None:
        assert ref.notebook_source.strip()
        assert ref.notebook > 0


def test_reference_text():
    assert paper.Reference(7.22, "Fig. 1").text == "7.22 (Fig. 1)"
    assert paper.Reference(7.22, "Fig. 1", 7.33).text == "7.22 (Fig. 1); authors' notebook: 7.33"
    with pytest.raises(dataclasses.FrozenInstanceError):
        paper.Reference(1.0, "x").value = 2.0


def test_accuracies_and_condition_numbers():
    assert set(paper.ACCURACY) == set(PAPER_NETWORKS)
    assert all(0 < r.value < 1 and 0 < r.notebook < 1 for r in paper.ACCURACY.values())
    # the paper's captions: 92%, 97%, 99%; condition numbers 7.22 and 1.07
    assert [paper.ACCURACY[n].value for n in PAPER_NETWORKS] == [0.92, 0.97, 0.99]
    assert paper.CONDITION_NUMBER["fcnn1"].value == 7.22
    assert paper.CONDITION_NUMBER["resnet18"].value == 1.07
    assert all(r.value >= 1 for r in paper.CONDITION_NUMBER.values())  # a ratio s_max / s_min


def test_the_papers_networks_are_the_first_registered():
    assert paper.NETWORKS == PAPER_NETWORKS == networks()[:3]


def test_figure_layers_exist_in_the_networks():
    assert set(paper.CONDITION_NUMBER) == set(paper.FIGURE_LAYER)
    for net, layer in paper.FIGURE_LAYER.items():
        assert net in networks()
        assert layer in weight_layers(build_model(net))
        assert network_spec(net).signal_layer == layer


def test_training_recipe_is_the_training_default():
    assert paper.TRAINING == {
        "optimizer": "sgd",
        "lr": 1e-3,
        "momentum": 0.9,
        "batch_size": 32,
        "epochs": 20,
    }
    cfg = TrainConfig("fcnn1")
    assert {k: getattr(cfg, k) for k in paper.TRAINING} == paper.TRAINING
    # the paper's networks have no recipe of their own: the paper's is theirs
    for net in paper.NETWORKS:
        assert TrainConfig.for_network(net) == TrainConfig(net)
    assert paper.PLUS_TRAINING == {"optimizer": "sgd", "lr": 1e-4, "steps": 100}


def test_figure3_methods_cover_every_digit_with_known_methods():
    assert set(paper.FIGURE3_METHODS) == set(PAPER_NETWORKS)
    for net, by_digit in paper.FIGURE3_METHODS.items():
        assert sorted(by_digit) == list(range(10)), net
        for digit, name in by_digit.items():
            method = get_method(name)  # raises for a name the library does not know
            assert method.name == name, (net, digit)


def test_figure3_methods_follow_the_caption():
    f = paper.FIGURE3_METHODS
    assert [d for d, m in f["fcnn1"].items() if m == "min-img+training"] == [2, 3, 7]
    assert {m for d, m in f["fcnn1"].items() if d not in (2, 3, 7)} == {"avg-img+training"}
    assert [d for d, m in f["fcnn5"].items() if m == "avg-img+training"] == [1, 2, 6, 7]
    assert {m for d, m in f["fcnn5"].items() if d not in (1, 2, 6, 7)} == {"min-img+training"}
    assert [d for d, m in f["resnet18"].items() if m == "min-img"] == [0, 2, 3, 8]
    assert f["resnet18"][4] == "avg-min-img"  # listed twice; the later one
    assert {f["resnet18"][d] for d in (1, 5, 6, 7, 9)} == {"avg-img"}


def test_citation():
    assert paper.TITLE in paper.CITATION and "2402.00261" in paper.CITATION
    assert paper.INVERSION_NOTE.startswith("not reported in the paper")


@pytest.mark.parametrize(
    ("dataset", "paper_shown"),
    [("mnist", True), ("mnist-embedded", True), ("fashion-mnist", False)],
)
def test_paper_numbers_only_in_titles_of_the_papers_datasets(dataset, paper_shown):
    title = paper.with_paper("fcnn1: condition number 6.5", "7.22", dataset)
    if paper_shown:
        assert title == "fcnn1: condition number 6.5 (paper: 7.22)"
    else:
        assert title == "fcnn1: condition number 6.5" and "paper" not in title
