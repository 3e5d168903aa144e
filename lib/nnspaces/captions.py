"""The report's captions of Figure 3's and lessons 4 and 5's figures, by file stem (the
report, :mod:`nnspaces.report`, shows them under each figure; the notebooks write the files).
"""

from __future__ import annotations

#: Figure 3 (``fig3_inverse_images``), then lesson 4, then lesson 5, in reading order.
INVERSION_CAPTIONS = {
    "fig3": (
        "Figure 3 (reproduced): per digit, an image each network maps onto the target output, "
        "one method per network as in the paper (top), and our best images inside [0, 1] "
        "(bottom). Under each image: relative output error / target-class probability."
    ),
    "fig3_scores": (
        "Raw output scores of each network over the training set, per output unit (x: raw "
        "score, y: number of images; the unit's own class in colour), with the targets (solid: "
        "the class's own maximum; dashed: the minimum the other digits' targets ask)."
    ),
    "fig3_methods_fcnn1": (
        "fcnn1: every inversion method for every digit. Images inside [0, 1] in grey; "
        "unconstrained ones on a zero-centred diverging scale (colour bar)."
    ),
    "fig3_methods_fcnn5": (
        "fcnn5: every inversion method for every digit. Images inside [0, 1] in grey; "
        "unconstrained ones on a zero-centred diverging scale (colour bar)."
    ),
    "fig3_methods_resnet18": (
        "resnet18: every inversion method for every digit. Images inside [0, 1] in grey; "
        "unconstrained ones on a zero-centred diverging scale (colour bar)."
    ),
    "lesson4_null_space": (
        "Lesson 4: several different images with one and the same output: exact pre-images of "
        "the SELU networks (first row each), and each sample's difference from the first, a "
        "null-space component (diverging scale)."
    ),
    "lesson4_exact": (
        "Lesson 4: the exact and Newton pre-images of every digit, on a zero-centred diverging "
        "scale: pixels far outside [0, 1]."
    ),
    "lesson5_box": (
        "Lesson 5: box-constrained pre-images (projected gradient) of every network with the "
        "box preset's step and with descent's smaller step: the larger step pushes pixels onto "
        "0 or 1."
    ),
    "lesson5_priors": (
        "Lesson 5: what each image prior does to ResNet18's box-constrained pre-images, and "
        "what it costs in output error (rel. err / p(c) under each image)."
    ),
    "lesson5_frontier": (
        "Lesson 5: how natural against how exact: a prior's weight traded against the relative "
        "output error, and how many digits the other networks still recognise; the chosen "
        "weight and the 9/10 line are marked."
    ),
    "lesson5_natural": (
        "Lesson 5: natural pre-images: each network's chosen target variant and prior weight, "
        "pixels inside [0, 1]; digits the other networks do not recognise are framed in red."
    ),
}
