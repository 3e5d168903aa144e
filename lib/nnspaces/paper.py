"""The paper's numbers and choices, each with where it comes from.

R. Pattichis and M. S. Pattichis, "Understanding Neural Network Systems for Image Analysis using
Vector Spaces and Inverse Maps", IEEE SSIAI 2024, pp. 73-76 (arXiv 2402.00261), and the
authors' public notebook (read, never copied). Notebooks, the report and the README generator
read them from here; nothing else types them.
"""

from __future__ import annotations

from dataclasses import dataclass

TITLE = (
    "Understanding Neural Network Systems for Image Analysis using Vector Spaces and Inverse Maps"
)
CITATION = f"R. Pattichis and M. S. Pattichis, {TITLE}, IEEE SSIAI 2024 (arXiv 2402.00261)"


@dataclass(frozen=True)
class Reference:
    """One number of the paper: its value, the authors' notebook's value where it printed
    one, and where each comes from."""

    value: float
    source: str
    notebook: float | None = None
    notebook_source: str = "the authors' public notebook"

    @property
    def text(self) -> str:
        """How the paper states it, e.g. ``7.22 (authors' notebook: 7.33)``."""
        main = f"{self.value:g} ({self.source})"
        return main if self.notebook is None else f"{main}; authors' notebook: {self.notebook:g}"


#: The datasets the paper's numbers compare with: MNIST, and the embedded sample of real MNIST
#: digits. On any other (Fashion-MNIST) a figure shows no "paper: ..." (with_paper).
DATASETS = ("mnist", "mnist-embedded")

#: The paper's three networks, in its order (the registry may hold more: nnspaces.models).
NETWORKS = ("fcnn1", "fcnn5", "resnet18")

#: Test accuracy by network (figure captions) and the notebook's validation accuracies.
ACCURACY: dict[str, Reference] = {
    "fcnn1": Reference(0.92, "caption of Fig. 3", 0.9168),
    "fcnn5": Reference(0.97, "caption of Fig. 3", 0.9677),
    "resnet18": Reference(0.99, "captions of Fig. 2 and Fig. 3", 0.9922),
}

#: Condition numbers of the layers the paper's figures show, by network.
CONDITION_NUMBER: dict[str, Reference] = {
    "fcnn1": Reference(7.22, "caption of Fig. 1: the 10 x 784 weight", 7.33),
    "resnet18": Reference(1.07, "caption of Fig. 2: layer1[0].conv1 as a 4096 x 9 matrix", 1.069),
}

#: The layer each figure shows: Fig. 1 the one-layer FCNN's weight, Fig. 2 ResNet18's first
#: residual block's first convolution.
FIGURE_LAYER: dict[str, str] = {"fcnn1": "1", "resnet18": "layer1.0.conv1"}

#: The training images the paper's networks learned from (50,000 of MNIST's 60,000; the rest
#: validate).
TRAIN_IMAGES = 50_000

#: The training recipe (Section 2 and the notebook): cross-entropy, SGD, batch 32, 20 epochs.
TRAINING = {"optimizer": "sgd", "lr": 1e-3, "momentum": 0.9, "batch_size": 32, "epochs": 20}

#: The notebook's "+training": SGD on the image, learning rate 1e-4, 100 steps.
PLUS_TRAINING = {"optimizer": "sgd", "lr": 1e-4, "steps": 100}

#: What the paper says of its inverse images' errors: nothing. The notebook's MSE, first and
#: last "+training" step, digit 0 (full MNIST): barely moved, or rose for ResNet18.
INVERSION_NOTE = (
    "not reported in the paper; the authors' notebook's +training lowered the output MSE by "
    "at most 3% (digit 0: fcnn1 7.04 -> 6.82, 3%; fcnn5 106.7 -> 106.3, 0.4%) and raised it for "
    "ResNet18 (151.8 -> 156.8)"
)


def _caption(pick: dict[str, tuple[int, ...]], rest: str) -> dict[int, str]:
    chosen = {c: m for m, classes in pick.items() for c in classes}
    return {c: chosen.get(c, rest) for c in range(10)}


#: The method Figure 3's caption names for each digit of each network. The caption lists
#: ResNet18's digit 4 twice (avg-img and avg-min-img); the later one is used.
FIGURE3_METHODS: dict[str, dict[int, str]] = {
    "fcnn1": _caption({"min-img+training": (2, 3, 7)}, "avg-img+training"),
    "fcnn5": _caption({"avg-img+training": (1, 2, 6, 7)}, "min-img+training"),
    "resnet18": _caption({"min-img": (0, 2, 3, 8), "avg-min-img": (4,)}, "avg-img"),
}


def with_paper(title: str, paper_value: str, dataset: str) -> str:
    """``title`` with ``(paper: <paper_value>)`` appended, only for a run on one of the
    paper's datasets (:data:`DATASETS`); on any other the paper's number
    compares with nothing, so the title stays as it is."""
    return f"{title} (paper: {paper_value})" if dataset in DATASETS else title


@dataclass(frozen=True)
class PaperClaim:
    """One claim of the paper, as it says it and where: ``id`` names the predicate that checks
    it on a run (:mod:`nnspaces.runner.ledger`)."""

    id: str
    says: str
    source: str


#: Every claim of the paper about a result, in the paper's order.
CLAIMS: tuple[PaperClaim, ...] = (
    PaperClaim("accuracy.fcnn1", "the 1-layer FCNN reaches 92% accuracy", "caption of Fig. 3"),
    PaperClaim("accuracy.fcnn5", "the 5-layer FCNN reaches 97% accuracy", "caption of Fig. 3"),
    PaperClaim("accuracy.resnet18", "ResNet18 reaches 99% accuracy", "captions of Fig. 2, Fig. 3"),
    PaperClaim(
        "condition.fcnn1",
        "the 1-layer FCNN's 10 x 784 weight has condition number 7.22",
        "caption of Fig. 1",
    ),
    PaperClaim(
        "condition.resnet18",
        "ResNet18's layer1[0].conv1 kernels, as a 4096 x 9 matrix, have condition number 1.07",
        "caption of Fig. 2",
    ),
    PaperClaim(
        "conv.well_conditioned",
        "the convolution kernels of the fine-tuned ResNet18 are well conditioned",
        "caption of Fig. 2: 1.07 for layer1[0].conv1, the one layer the paper reports; the "
        "ledger asks it of every convolution",
    ),
    PaperClaim(
        "residual.information_lost",
        "residual vectors visualise the information each layer loses",
        "abstract; Fig. 1, last row",
    ),
    PaperClaim(
        "inverse.fcnn_invertible",
        "the two FCNNs are invertible networks: inputs for a chosen output can be computed",
        "abstract; Section 4",
    ),
    PaperClaim(
        "inverse.training_improves",
        '"+training" (gradient descent on the start image) brings its output toward the target',
        "Section 4; caption of Fig. 3",
    ),
    PaperClaim(
        "inverse.recognised",
        "Figure 3's images are ideal input images of each digit: the network reads each one as "
        "its digit",
        "caption of Fig. 3",
    ),
    PaperClaim(
        "inverse.resnet_binarized",
        "ResNet18's min-img images (digits 0, 2, 3, 8) look binarized",
        "caption of Fig. 3",
    ),
)
