"""The notebook registry: each notebook once, with its title, kind, metrics and figures.

The runner (which notebooks run, in which order), the sweep (which it runs by default), the
report (titles, figure captions and order, the metrics a complete run has), the student
edition and the README generator all ask this module. A figure's ``stem`` is its file name in
``<out_dir>/figures/``; ``{network}`` in a stem stands for a network's name (one file each).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: What a notebook is: one of the paper's figures, a lesson beyond the paper, or a tool.
KINDS = ("figure", "lesson", "tool")


@dataclass(frozen=True)
class Figure:
    """A figure a notebook saves: its file stem and the caption the report shows under it."""

    stem: str
    caption: str

    def matches(self, stem: str) -> str | None:
        """The network a file ``stem`` names when it is this figure (``""`` for a figure
        without ``{network}``), None when it is another figure."""
        if "{network}" not in self.stem:
            return "" if stem == self.stem else None
        pattern = re.escape(self.stem).replace(re.escape("{network}"), r"(\w+)")
        m = re.fullmatch(pattern, stem)
        return m[1] if m else None


@dataclass(frozen=True)
class Notebook:
    """One notebook: ``name`` (``notebooks/<name>.ipynb``), ``title``, ``kind`` (one of
    :data:`KINDS`), ``metrics`` (the metrics file it writes, None for none), its ``figures``,
    ``minutes`` a student needs and what it ``teaches`` (lessons), and whether the runner
    executes it (``runs``)."""

    name: str
    title: str
    kind: str
    metrics: str | None = None
    figures: tuple[Figure, ...] = ()
    minutes: int | None = None
    teaches: str = ""
    runs: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"notebook {self.name!r}: kind {self.kind!r} is not one of {KINDS}")


_METHODS = (
    "{network}: every inversion method for every digit. Images inside [0, 1] in grey; "
    "unconstrained ones on a zero-centred diverging scale (colour bar)."
)

#: Every notebook, in the order the runner executes them (later ones reuse the networks
#: earlier ones trained).
NOTEBOOKS = (
    Notebook(
        "fig1_fcnn_signal_space",
        "Figure 1: signal space of the one-layer FCNN",
        "figure",
        metrics="fig1",
        teaches="the paper's Figure 1: SVD, row and null space, residuals of a one-layer network",
        minutes=45,
        figures=(
            Figure(
                "fig1",
                "Figure 1 (reproduced): the one-layer FCNN. Rows: the weights w_c (one 28x28 "
                "template per output), the signal space s_i v_i (scaled right singular vectors), "
                "the residuals r_c = a_c - proj_{w_c} a_c, and the class averages a_c.",
            ),
            Figure(
                "fig1_energy",
                "Fraction of each class average's energy in the row space of the one-layer "
                "FCNN's weight (what the layer sees); the rest is the residual it cannot see.",
            ),
        ),
    ),
    Notebook(
        "fig2_resnet_conv_signal_space",
        "Figure 2: signal space of a ResNet18 convolution",
        "figure",
        metrics="fig2",
        teaches="the paper's Figure 2: conv kernels as a matrix, and the exact convolution "
        "operator",
        minutes=50,
        figures=(
            Figure(
                "fig2",
                "Figure 2 (reproduced): the nine 3x3 signal-space kernels s_i v_i of ResNet18's "
                "layer1[0].conv1, from the SVD of its (64*64) x 9 kernel matrix.",
            ),
            Figure(
                "fig2_per_layer",
                "Condition number of every convolution of ResNet18, trained against at "
                "initialisation.",
            ),
            Figure(
                "fig2_operators",
                "Beyond the paper: every convolution of ResNet18 as the exact operator on the "
                "input it sees (a 28x28 digit), its condition number over the nonzero and over "
                "all singular values, beside the paper's kernel-matrix condition number (log "
                "scale; no bar where a singular value is exactly zero).",
            ),
        ),
    ),
    Notebook(
        "fig3_inverse_images",
        "Figure 3: inverse images",
        "figure",
        metrics="fig3",
        teaches="the paper's Figure 3: targets, the paper's inverse maps, ours",
        minutes=30,
        figures=(
            Figure(
                "fig3",
                "Figure 3 (reproduced): per digit, each network's image for the target output, "
                "one method per network as in the paper (top), and our best images inside "
                "[0, 1] (bottom). Under each image: how close its output gets (relative output "
                "error) / target-class probability.",
            ),
            Figure(
                "fig3_scores",
                "Raw output scores of each network over the training set, per output unit (x: "
                "raw score, y: number of images; the unit's own class in colour), with the "
                "targets (solid: the class's own maximum; dashed: the minimum the other digits' "
                "targets ask).",
            ),
            Figure("fig3_methods_{network}", _METHODS),
        ),
    ),
    Notebook(
        "lesson4_exact_inversion",
        "Lesson 4: exact and Newton inversion, the null space",
        "lesson",
        metrics="lesson4",
        teaches="exact pre-images and Newton: the null space as a family of inputs",
        minutes=30,
        figures=(
            Figure(
                "lesson4_null_space",
                "Lesson 4: several different images with one and the same output: exact "
                "pre-images of the SELU networks (first row each), and each sample's difference "
                "from the first, a null-space component (diverging scale).",
            ),
            Figure(
                "lesson4_exact",
                "Lesson 4: the exact and Newton pre-images of every digit, on a zero-centred "
                "diverging scale.",
            ),
        ),
    ),
    Notebook(
        "lesson5_priors_and_natural_images",
        "Lesson 5: the box, image priors, natural pre-images",
        "lesson",
        metrics="lesson5",
        teaches="the pixel box, image priors, pre-images that look like digits",
        minutes=35,
        figures=(
            Figure(
                "lesson5_box",
                "Lesson 5: box-constrained pre-images (projected gradient) of every network with "
                "the box preset's step and with descent's smaller step.",
            ),
            Figure(
                "lesson5_priors",
                "Lesson 5: what each image prior does to ResNet18's box-constrained pre-images, "
                "and what it costs in output error (rel. err / p(c) under each image).",
            ),
            Figure(
                "lesson5_frontier",
                "Lesson 5: how natural against how exact: a prior's weight traded against the "
                "relative output error, and how many digits the other networks still recognise; "
                "the chosen weight and the 9/10 line are marked.",
            ),
            Figure(
                "lesson5_natural",
                "Lesson 5: natural pre-images: each network's chosen target variant and prior "
                "weight, pixels inside [0, 1]; framed in red: not the digit to every judge "
                "(classifiers that took no part), or pixels outside [0, 1].",
            ),
        ),
    ),
    Notebook(
        "lesson6_followup_paper",
        "Lesson 6: the follow-up paper's methods on four networks",
        "lesson",
        metrics="lesson6",
        teaches="the follow-up paper: probability targets, Levenberg-Marquardt, random backward "
        "walks, a vision transformer's heads",
        minutes=40,
        figures=(
            Figure(
                "lesson6_probability",
                "Lesson 6: images inside [0, 1] that give p(c) >= 0.9 from the average image, "
                "raw-score targets, per network and method; under each, p(c) (x: below the "
                "level).",
            ),
            Figure(
                "lesson6_probability_log_odds",
                "Lesson 6: the same with one log-odds equation per class, which leaves the other "
                "scores free; under each image, p(c) (x: below the level).",
            ),
            Figure(
                "lesson6_lm_min_max",
                "Lesson 6: Levenberg-Marquardt and descent on the paper's min/max targets: the "
                "median relative output error after every step.",
            ),
            Figure(
                "lesson6_walk",
                "Lesson 6: draws with one and the same output (the null space of the first "
                "layer, and of every layer), with each draw's relative output error.",
            ),
            Figure(
                "lesson6_walk_differences",
                "Lesson 6: each draw minus the mean of its row: the part of the image the "
                "network cannot see.",
            ),
            Figure(
                "lesson6_vit_heads",
                "Lesson 6: singular values of the vision transformer's attention heads, per "
                "projection (Q, K, V, output).",
            ),
        ),
    ),
    Notebook("explore", "Explorer (interactive; the widgets need a live kernel)", "tool"),
    Notebook(
        "any_model",
        "Bring your own model: its layers as linear algebra, and images it maps onto outputs",
        "tool",
        runs=False,
    ),
)
_BY_NAME = {nb.name: nb for nb in NOTEBOOKS}


def notebook(name: str) -> Notebook:
    """The registered notebook ``name``, or a clear error naming the known ones."""
    if name not in _BY_NAME:
        raise ValueError(f"unknown notebook {name!r}; known: {', '.join(_BY_NAME)}")
    return _BY_NAME[name]


def runner_notebooks() -> tuple[str, ...]:
    """The notebooks the runner executes, in its order."""
    return tuple(nb.name for nb in NOTEBOOKS if nb.runs)


def names_of_kind(*kinds: str) -> list[str]:
    """The runner's notebooks of these kinds, in its order."""
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ValueError(f"unknown notebook kind(s) {bad}; allowed: {', '.join(KINDS)}")
    return [nb.name for nb in NOTEBOOKS if nb.runs and nb.kind in kinds]


def lessons() -> list[Notebook]:
    """The notebooks taught as lessons, in reading order: the paper's figures (lessons 1-3)
    and the lessons beyond them (each with the minutes it takes)."""
    return [nb for nb in NOTEBOOKS if nb.minutes is not None]


def metrics_names() -> tuple[str, ...]:
    """The metrics files a complete run writes, in the runner's order."""
    return tuple(nb.metrics for nb in NOTEBOOKS if nb.runs and nb.metrics)


def figure_of(stem: str) -> tuple[Notebook, Figure, str] | None:
    """The notebook and figure a figure file's ``stem`` belongs to, and the network it names
    (``""`` for none); None for a file no notebook registers."""
    for nb in NOTEBOOKS:
        for fig in nb.figures:
            network = fig.matches(stem)
            if network is not None:
                return nb, fig, network
    return None


def caption(stem: str) -> str | None:
    """The report's caption of figure file ``stem`` (None for an unregistered file)."""
    found = figure_of(stem)
    return None if found is None else found[1].caption.replace("{network}", found[2])


def figure_rank(stem: str) -> tuple[int, str]:
    """A sort key: the registry's order of figures, then unregistered files by name."""
    order = [f.stem for nb in NOTEBOOKS for f in nb.figures]
    found = figure_of(stem)
    return (order.index(found[1].stem), stem) if found else (len(order), stem)
