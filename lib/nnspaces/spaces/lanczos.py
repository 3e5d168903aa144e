"""Extreme eigenvalues of a symmetric map given only by its action (a Gram map ``A^T A``):
Lanczos, and a certificate for the largest one computed in float64.

:func:`gram_extremes` runs Lanczos in float32 on the map (fast: half the memory traffic, and
float32 convolutions), then refines in float64 from the float32 Ritz vector, and certifies the
result with one more float64 product: for a unit vector ``y``, ``theta = y^T G y`` is never
above the largest eigenvalue, and some eigenvalue lies within ``r = ||G y - theta y||`` of
``theta``. The largest singular value ``sqrt(theta)`` is labelled exact when ``r <= RTOL *
theta``: then ``sqrt(theta)`` is within ``sqrt(1 + RTOL) - 1`` relative of that eigenvalue's
root. That the eigenvalue is the largest is Lanczos' answer from a random start (a start
with no component along the top eigenvector has probability zero); a value that misses the
tolerance is labelled a lower bound, which it is whatever the start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal

#: Residual / value at which an eigenvalue of the Gram map counts as exact: its root (a
#: singular value) is then within 5e-7 relative.
RTOL = 1e-6


@dataclass(frozen=True, eq=False)
class Extremes:
    """Lanczos on a Gram map: the largest and smallest Ritz values (squared singular values)
    with their residual norms and Ritz vectors, after ``steps`` steps (``exhausted``: the
    Krylov space became invariant, so the Ritz values are eigenvalues)."""

    largest: float
    largest_residual: float
    smallest: float
    smallest_residual: float
    steps: int
    exhausted: bool
    largest_vector: torch.Tensor | None = None
    smallest_vector: torch.Tensor | None = None

    @property
    def largest_converged(self) -> bool:
        return self.exhausted or self.largest_residual <= RTOL * self.largest

    @property
    def smallest_converged(self) -> bool:
        return self.exhausted or self.smallest_residual <= RTOL * max(self.smallest, 0.0)


def lanczos_extremes(
    gram, n: int, *, min_steps: int = 0, max_steps: int = 300, device=None, seed: int = 0,
    dtype=torch.float64, start: torch.Tensor | None = None, rtol: float | None = None,
) -> Extremes:  # fmt: skip
    """Lanczos with full reorthogonalisation on the symmetric map ``gram`` (flat vectors of
    length ``n`` in ``dtype``), from ``start`` (default a random vector): runs until the
    largest Ritz value's residual estimate is at most ``rtol`` (default :data:`RTOL`) times it
    and at least ``min_steps`` steps were taken (more steps: the smallest converge too), at
    most ``max_steps``. Ritz values lie inside the spectrum: the largest is never above the
    largest eigenvalue, the smallest never below the smallest."""
    if start is None:
        gen = torch.Generator(device="cpu").manual_seed(seed)
        start = torch.randn(n, generator=gen, dtype=torch.float64)
    rtol = RTOL if rtol is None else rtol
    q = start.to(device=device, dtype=dtype).reshape(-1)
    q = q / torch.linalg.vector_norm(q)
    max_steps = min(max_steps, n)
    Q = torch.empty(max_steps, n, dtype=dtype, device=device)
    alpha, beta = [], []
    for j in range(max_steps):
        Q[j] = q
        w = gram(q)
        a = float(w @ q)
        w -= a * q
        if j:
            w -= beta[-1] * Q[j - 1]
        for _ in range(2):  # reorthogonalise against all; a second pass only if needed
            before = torch.linalg.vector_norm(w)
            w -= Q[: j + 1].T @ (Q[: j + 1] @ w)
            b = float(torch.linalg.vector_norm(w))
            if b > 0.5 * float(before):
                break
        alpha.append(a)
        theta, Z = eigh_tridiagonal(np.array(alpha), np.array(beta))
        res = b * np.abs(Z[-1])
        exhausted = b <= 1e-12 * max(abs(theta[-1]), 1e-300) or j + 1 == n
        if exhausted or (j + 1 >= min_steps and res[-1] <= rtol * theta[-1]) or j + 1 == max_steps:
            break
        beta.append(b)
        q = w / b
    Z = torch.as_tensor(Z[:, [-1, 0]], dtype=dtype, device=Q.device)
    vectors = Q[: j + 1].T @ Z
    return Extremes(
        float(theta[-1]), float(res[-1]), float(theta[0]), float(res[0]), j + 1, exhausted,
        vectors[:, 0], vectors[:, 1],
    )  # fmt: skip


@dataclass(frozen=True)
class Certificate:
    """For a unit vector ``y``: ``value = y^T G y`` and ``residual = ||G y - value y||``
    (float64): some eigenvalue of ``G`` lies within ``residual`` of ``value``."""

    value: float
    residual: float

    @property
    def exact(self) -> bool:
        return self.residual <= RTOL * self.value

    @property
    def sigma_rel_error(self) -> float:
        """How far ``sqrt(value)`` may lie below the root of the eigenvalue it certifies,
        relative: ``sqrt(1 + residual / value) - 1``."""
        return math.sqrt(1 + self.residual / self.value) - 1 if self.value > 0 else math.inf


def certify(gram, y: torch.Tensor) -> Certificate:
    """The :class:`Certificate` of ``y`` (normalised here) for ``gram`` (float64)."""
    y = y.to(torch.float64)
    y = y / torch.linalg.vector_norm(y)
    Gy = gram(y)
    value = float(y @ Gy)
    return Certificate(value, float(torch.linalg.vector_norm(Gy - value * y)))


@dataclass(frozen=True)
class GramExtremes:
    """What :func:`gram_extremes` found: the largest eigenvalue's :class:`Certificate`; the
    smallest eigenvalue (``smallest_exact``) or an upper bound on it; Lanczos steps in all."""

    largest: Certificate
    smallest: float
    smallest_exact: bool
    steps: int


def gram_extremes(
    gram, n: int, *, gram_fast=None, smallest_steps: int = 0, max_steps: int = 300,
    device=None, seed: int = 0, start: torch.Tensor | None = None,
) -> GramExtremes:  # fmt: skip
    """The extreme eigenvalues of the float64 map ``gram``. With ``gram_fast`` (the same map
    in float32) and no ``smallest_steps``: float32 Lanczos, float64 Lanczos from its Ritz
    vector (``max_steps`` each), the certificate; the smallest eigenvalue's upper bound is the
    float64 Rayleigh quotient of the float32 run's smallest Ritz vector or the float64 run's
    smallest Ritz value, whichever is lower. Otherwise one float64 run of at least
    ``smallest_steps`` steps, whose smallest Ritz value is exact where it converged."""
    kw = {"max_steps": max_steps, "device": device, "seed": seed}
    if gram_fast is None or smallest_steps > 0:
        ext = lanczos_extremes(gram, n, min_steps=smallest_steps, start=start, rtol=RTOL / 2, **kw)
        return GramExtremes(
            certify(gram, ext.largest_vector), ext.smallest, ext.smallest_converged, ext.steps
        )
    fast = lanczos_extremes(gram_fast, n, dtype=torch.float32, start=start, **kw)
    ref = lanczos_extremes(gram, n, start=fast.largest_vector, rtol=RTOL / 2, **kw)
    smallest = min(ref.smallest, certify(gram, fast.smallest_vector).value)
    exact = ref.exhausted and ref.steps == n
    return GramExtremes(certify(gram, ref.largest_vector), smallest, exact, fast.steps + ref.steps)
