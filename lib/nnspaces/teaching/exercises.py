"""The lessons' exercises, by id: each computes its expected answer from the notebook's state
(:class:`.exercise.Exercise`), so that no cell holds it. In a notebook::

    answer = ...                         # the student's
    ns.ex("1.1").check(answer, W=W)      # the values the expected answer is computed from
    ns.ex("1.1").hint(); ns.ex("1.1").solution()

``naive`` lists the guesses each check must reject (0 is always tried for numbers): the
shortcuts a student might take without doing the lesson (a number printed above, the rank for
the nullity, a percentage, the formula of another layer).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..spaces.analysis import head_matrices
from ..spaces.layer import condition_number, conv_as_matrix
from ..spaces.operators import ConvOperator, spectrum
from .exercise import CORRECT, NOT_ANSWERED, NOT_YET, TOO_EASY, Exercise, LessonExercise

__all__ = ["CORRECT", "EXERCISES", "NOT_ANSWERED", "NOT_YET", "TOO_EASY", "ex"]


def _f64(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu()
    return np.asarray(a, dtype=np.float64)


# ----------------------------------------------------------------------------- lesson 1


def _first_test_image(ctx) -> np.ndarray:
    return _f64(ctx.data.x_test[0]).reshape(-1)


def _seen(ctx, sp) -> tuple[float, float]:
    """(|P x|^2, |x|^2) of the first test image for the row space of ``sp``."""
    x = _first_test_image(ctx)
    Px = sp.row_space @ (sp.row_space.T @ x)
    return float(Px @ Px), float(x @ x)


def _kernel_shape_rule(net, layer: str = "layer4.0.conv2") -> float:
    m, n = conv_as_matrix(net.model.get_submodule(layer).weight).shape
    return (np.sqrt(m) + np.sqrt(n)) / (np.sqrt(m) - np.sqrt(n))


def _null_dim_at(net, layer: str, input_shape: tuple[int, int, int]) -> int:
    op = ConvOperator(net.model.get_submodule(layer), input_shape)
    return int(spectrum(op, dense_limit=10**9).null_dim)


def _selu_preimage(y: float) -> float:
    from scipy.optimize import brentq

    def selu(z: float) -> float:
        return float(torch.nn.functional.selu(torch.tensor(z, dtype=torch.float64))) - y

    return float(brentq(selu, -50.0, 50.0, xtol=1e-15, rtol=1e-15))


def _cross_seen(samples, inverters) -> float:
    d = _f64(samples["fcnn5"].image[1] - samples["fcnn5"].image[0]).reshape(-1)
    V = inverters["fcnn1"].layers[0].spaces.row_space
    p = V.T @ d
    return float(p @ p / (d @ d))


def _tv(img) -> float:
    img = _f64(img).reshape(28, 28)
    return float((np.abs(np.diff(img, axis=0)).sum() + np.abs(np.diff(img, axis=1)).sum()) / 784)


def _principal_cosine(vit, layer: str = "encoder.layers.encoder_layer_0.self_attention") -> float:
    maps = head_matrices(vit.get_submodule(layer))
    bases = [np.linalg.svd(maps[h, "Q"], full_matrices=False)[2] for h in (0, 1)]
    return float(np.linalg.svd(bases[0] @ bases[1].T, compute_uv=False)[0])


_LESSONS: list[Exercise] = [
    Exercise(
        "1.1",
        "integer",
        ("W",),
        lambda W: W.shape[1] - int(np.linalg.matrix_rank(_f64(W))),
        hint="rank + nullity = the number of columns of W; the rank is the number of nonzero "
        "singular values.",
        solution="answer = W.shape[1] - len(sp.S)  # columns minus rank: every singular value "
        "is nonzero",
        naive=(lambda W: int(np.linalg.matrix_rank(_f64(W))), lambda W: W.shape[1]),
    ),
    Exercise(
        "1.2",
        "number",
        ("ctx", "sp"),
        lambda ctx, sp: float(_first_test_image(ctx) @ _first_test_image(ctx)),
        hint="the two parts are orthogonal: their squared norms add up to the image's.",
        solution="import torch\n\nx = ctx.data.x_test[0].reshape(-1).double()\n"
        "V = torch.from_numpy(sp.row_space)\nPx = V @ (V.T @ x)\nr = x - Px\n"
        "answer = float(Px @ Px + r @ r)",
        naive=(
            1.0,
            lambda ctx, sp: _seen(ctx, sp)[0],
            lambda ctx, sp: float(np.sqrt(_seen(ctx, sp)[1])),
        ),
    ),
    Exercise(
        "1.3",
        "number",
        ("ctx", "sp"),
        lambda ctx, sp: _seen(ctx, sp)[0] / _seen(ctx, sp)[1],
        fraction=True,
        hint="divide the squared length of the projection P x by that of x; both are from "
        "exercise 1.2.",
        solution="answer = float(Px @ Px / (x @ x))",
        naive=(
            lambda ctx, sp: sp.rank / sp.row_space.shape[0],
            lambda ctx, sp: 1 - _seen(ctx, sp)[0] / _seen(ctx, sp)[1],
            1.0,
        ),
    ),
    Exercise(
        "1.4",
        "number",
        ("sp",),
        lambda sp: sp.rank / sp.row_space.shape[0],
        rtol=1e-3,
        fraction=True,
        hint="each of the 784 orthonormal directions holds the same expected share of a random "
        "image's energy; the row space has rank-many of them.",
        solution="answer = sp.rank / W.shape[1]",
        naive=(lambda sp: sp.rank, 0.1, lambda sp: 1 / sp.row_space.shape[0]),
    ),
    # ------------------------------------------------------------------------- lesson 2
    Exercise(
        "2.1",
        "number",
        ("net",),
        _kernel_shape_rule,
        rtol=1e-3,
        hint="the kernel matrix of a convolution with C_in inputs and C_out outputs has "
        "C_out * C_in rows and one column per kernel position.",
        solution="m, n = 512 * 512, 3 * 3\n"
        "answer = (np.sqrt(m) + np.sqrt(n)) / (np.sqrt(m) - np.sqrt(n))",
        naive=(
            1.0,
            lambda net: _kernel_shape_rule(net, "layer1.0.conv1"),
            lambda net: condition_number(
                conv_as_matrix(net.model.get_submodule("layer1.0.conv1").weight)
            ),
        ),
    ),
    Exercise(
        "2.2",
        "integer",
        ("net",),
        lambda net: _null_dim_at(net, "layer2.0.conv1", (64, 9, 9)),
        hint="count the inputs and the outputs; rank + nullity = number of inputs, and the rank "
        "of an m x n matrix is at most min(m, n).",
        solution="n_in, n_out = 64 * 9 * 9, 128 * 5 * 5\n"
        "answer = n_in - min(n_in, n_out)  # n - rank, with rank = min(m, n) = m",
        naive=(1088, 64 * 9 * 9, 128 * 5 * 5),
    ),
    Exercise(
        "2.3",
        "choice",
        (),
        lambda: "b",
        hint="what does rank n say about the null space?",
        solution='answer = "b"',
        why_not={
            "a": "the condition number can be large and the layer still invertible; it says "
            "how much errors grow when inverting, not whether anything is lost.",
            "c": "a square matrix can be singular (rank < n): then a null space exists and is "
            "lost. Look for square layers with null_dim > 0 in the table.",
            "d": "invertibility is a property of the matrix; a random (untrained) invertible "
            "matrix keeps everything too.",
        },
    ),
    # ------------------------------------------------------------------------- lesson 3
    Exercise(
        "3.1",
        "number",
        ("results",),
        lambda results: float(results["fcnn1"]["avg-img"].rel_error[0]),
        rtol=1e-5,
        hint="evaluate the network in float64 on the image, subtract the target, divide norms.",
        solution='import copy\n\nx0 = results["fcnn1"]["avg-img"].image[:1].double()\n'
        "with torch.no_grad():\n"
        '    out = copy.deepcopy(models["fcnn1"]).cpu().double()(x0)[0]\n'
        'answer = float((out - targets["fcnn1"][0]).norm() / targets["fcnn1"][0].norm())',
        naive=(
            1.0,
            lambda results: float(f"{results['fcnn1']['avg-img'].rel_error[0]:.2g}"),
            lambda results: float(results["fcnn1"]["avg-img"].median_rel_error),
        ),
    ),
    Exercise(
        "3.2",
        "array",
        ("results",),
        lambda results: _f64(results["fcnn5"]["best"].rel_error),
        rtol=1e-9,
        hint="an exact row that failed is NaN: take the minimum ignoring NaN.",
        solution='errors = np.array([r.rel_error for m, r in results["fcnn5"].items()\n'
        '                   if m not in ("best", "best-box")], dtype=float)\n'
        "answer = np.nanmin(errors, axis=0)",
        naive=(
            lambda results: _f64(results["fcnn5"]["descent"].rel_error),
            lambda results: _f64(results["fcnn5"]["best-box"].rel_error),
        ),
    ),
    Exercise(
        "3.3",
        "choice",
        (),
        lambda: "b",
        hint="the error column of `exact` is at rounding level; ask what constrains the pixels.",
        solution='answer = "b"',
        why_not={
            "a": "exact reaches its targets to rounding error (its error in the table): it is "
            "not inaccurate.",
            "c": "SELU is strictly increasing: it has an exact inverse on its range (lesson 4).",
        },
    ),
    # ------------------------------------------------------------------------- lesson 4
    Exercise(
        "4.1",
        "number",
        (),
        lambda: _selu_preimage(-1.0),
        rtol=1e-9,
        hint="below zero, selu(z) = lambda * alpha * (exp(z) - 1): solve it for z.",
        solution="lam, alpha = 1.0507009873554805, 1.6732632423543772  # torch.nn.SELU's\n"
        "answer = float(np.log1p(-1.0 / (lam * alpha)))",
        naive=(-1.0, -1.0 / 1.0507009873554805, -1.0 / (1.0507009873554805 * 1.6732632423543772)),
    ),
    Exercise(
        "4.2",
        "number",
        ("samples", "inverters"),
        _cross_seen,
        fraction=True,
        hint='project d on fcnn1\'s row space (`inverters["fcnn1"].layers[0].spaces.row_space`, '
        "784 x 10) as in lesson 1, and divide squared lengths.",
        solution='d = (samples["fcnn5"].image[1] - samples["fcnn5"].image[0]).reshape(-1)'
        '.double().numpy()\nV = inverters["fcnn1"].layers[0].spaces.row_space\n'
        "answer = float(np.sum((V.T @ d) ** 2) / (d @ d))",
        naive=(10 / 784, 1.0, 528 / 784),
    ),
    Exercise(
        "4.3",
        "number",
        ("inverters",),
        lambda inverters: condition_number(inverters["fcnn5"].layers[1].W),
        rtol=1e-6,
        hint="the ratio of the largest to the smallest singular value of W2.",
        solution='s = np.linalg.svd(inverters["fcnn5"].layers[1].W, compute_uv=False)\n'
        "answer = s[0] / s[-1]",
        naive=(1.0, 256, lambda inverters: condition_number(inverters["fcnn5"].layers[0].W)),
    ),
    Exercise(
        "4.4",
        "number",
        ("pre", "reference"),
        lambda pre, reference: float(
            np.sum((pre.particular[0] - reference[0]) ** 2) - np.sum((pre.x[0] - reference[0]) ** 2)
        ),
        rtol=1e-6,
        hint="both are pre-images of the same z1: they differ only in the null space, and the "
        "exact image's null-space part is the class average's.",
        solution="x_min, x_avg = pre.particular[0], reference[0]\n"
        "answer = float(np.sum((x_min - x_avg) ** 2) - np.sum((pre.x[0] - x_avg) ** 2))",
        naive=(
            lambda pre, reference: float(np.sum((pre.x[0] - reference[0]) ** 2)),
            lambda pre, reference: float(np.sum(pre.particular[0] ** 2)),
        ),
    ),
    # ------------------------------------------------------------------------- lesson 5
    Exercise(
        "5.1",
        "number",
        ("averages",),
        lambda averages: _tv(averages[1, 0]),
        rtol=1e-9,
        hint="both directions, absolute values, divide by 28 * 28.",
        solution="img = averages[1, 0].double()\n"
        "answer = float(((img[1:, :] - img[:-1, :]).abs().sum() + (img[:, 1:] - img[:, :-1])"
        ".abs().sum())\n               / img.numel())",
        naive=(
            lambda averages: 784 * _tv(averages[1, 0]),
            lambda averages: float(np.abs(np.diff(_f64(averages[1, 0]), axis=1)).sum() / 784),
        ),
    ),
    Exercise(
        "5.2",
        "choice",
        (),
        lambda: "b",
        hint="what does clipping do to a pixel that a step has pushed to 1.3?",
        solution='answer = "b"',
        why_not={
            "a": "the targets are scores of the output units; they say nothing about pixels.",
            "c": "Adam changes the step of every pixel smoothly; only the projection (clipping) "
            "puts a value exactly on 0 or 1.",
        },
    ),
    Exercise(
        "5.3",
        "number",
        ("natural", "averages"),
        lambda natural, averages: _tv(natural["resnet18"].result.image[1]) / _tv(averages[1, 0]),
        rtol=1e-6,
        hint="total variation as in exercise 5.1, of the image and of the class average.",
        solution="def tv(img):\n    img = img.double().reshape(28, 28)\n"
        "    return float(((img[1:] - img[:-1]).abs().sum() + (img[:, 1:] - img[:, :-1]).abs()"
        ".sum()) / 784)\n\n"
        'answer = tv(natural["resnet18"].result.image[1]) / tv(averages[1, 0])',
        naive=(
            1.0,
            lambda natural, averages: (
                _tv(averages[1, 0]) / _tv(natural["resnet18"].result.image[1])
            ),
        ),
    ),
    # ------------------------------------------------------------------------- lesson 6
    Exercise(
        "6.1",
        "number",
        (),
        lambda: float(np.log(9.0)),
        rtol=1e-9,
        hint="solve 1 / (1 + exp(-g)) = 0.9 for g.",
        solution="answer = float(np.log(0.9 / (1 - 0.9)))",
        naive=(0.9, 9.0, float(np.log(0.9)), float(np.log(9.0)) + 0.05),
    ),
    Exercise(
        "6.2",
        "array",
        ("J", "r"),
        lambda J, r: _f64(J).T @ _f64(r),
        rtol=1e-4,
        hint="dx = J^T (J J^T + mu I)^-1 r, then multiply by mu.",
        solution="mu = 1e8\n"
        "answer = mu * (J.T @ np.linalg.solve(J @ J.T + mu * np.eye(len(r)), r))",
        naive=(
            lambda J, r: _f64(J).T @ np.linalg.solve(_f64(J) @ _f64(J).T, _f64(r)),
            lambda J, r: -(_f64(J).T @ _f64(r)),
        ),
    ),
    Exercise(
        "6.3",
        "choice",
        (),
        lambda: "b",
        hint="which layer has no null space, and what does that fix below it?",
        solution='answer = "b"',
        why_not={
            "a": "the first layer has the largest null space of all (528 dimensions): every "
            'draw there succeeds, which is why layers="first" works.',
            "c": "the walk stops because a SELU cannot give a value, not because of training: "
            "an untrained network with the same shapes fails the same way.",
        },
    ),
    Exercise(
        "6.4",
        "number",
        ("vit",),
        _principal_cosine,
        rtol=1e-6,
        hint="orthonormal bases B0, B1 of the two row spaces (rows of Vh from the SVD, 16 x 64); "
        "the cosines of the principal angles are the singular values of B0 @ B1.T.",
        solution='maps = ns.head_matrices(vit.get_submodule("encoder.layers.encoder_layer_0.'
        'self_attention"))\n'
        'B0, B1 = (np.linalg.svd(maps[h, "Q"], full_matrices=False)[2] for h in (0, 1))\n'
        "answer = float(np.linalg.svd(B0 @ B1.T, compute_uv=False)[0])",
        naive=(1.0, 16 / 64, 0.5),
    ),
]

#: Every exercise of the lessons, by id ("1.1", ...).
EXERCISES: dict[str, Exercise] = {e.ident: e for e in _LESSONS}


def ex(ident: str) -> LessonExercise:
    """The exercise ``ident`` ("1.1"): ``.check(answer, **state)``, ``.hint()``,
    ``.solution()``."""
    if ident not in EXERCISES:
        raise KeyError(f"no exercise {ident!r}; the exercises are {', '.join(EXERCISES)}")
    return LessonExercise(EXERCISES[ident])
