"""Random small affine moves of image batches: shifts, rotations and scalings.

Two uses, one transform: training a judge that reads a digit wherever it sits
(:mod:`nnspaces.inversion.judges`), and "transformation robustness" in the natural pre-image
search (:mod:`nnspaces.inversion.robust`: an image optimised for a network's output under
random moves keeps the digit's shape, not one pixel grid's accident).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Moves:
    """How far a random move goes: a shift of up to ``shift`` pixels in each direction, a
    rotation of up to ``angle`` degrees, a scaling by a factor in ``[1 - scale, 1 + scale]``.
    All zero: the identity."""

    shift: float = 2.0
    angle: float = 10.0
    scale: float = 0.1

    def __post_init__(self) -> None:
        for name in ("shift", "angle", "scale"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name}={v!r} must be a finite number >= 0")
        if self.scale >= 1:
            raise ValueError(
                f"scale={self.scale!r} must be < 1 (a factor in [1 - scale, 1 + scale])"
            )


def random_moves(x: torch.Tensor, moves: Moves, generator: torch.Generator) -> torch.Tensor:
    """``x`` ``(N, C, H, W)``, each image moved by its own random draw of ``moves`` (bilinear,
    zeros outside the image); differentiable in ``x``. The draws come from ``generator``
    (on the CPU), so the same generator state gives the same moves on any device."""
    if x.dim() != 4:
        raise ValueError(f"images must be (N, C, H, W); got shape {tuple(x.shape)}")
    n, _, h, w = x.shape

    def draw(bound: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator, dtype=torch.float64) * 2 - 1) * bound

    angle = draw(math.radians(moves.angle))
    factor = 1 + draw(moves.scale)
    tx, ty = draw(moves.shift) * 2 / w, draw(moves.shift) * 2 / h
    cos, sin = torch.cos(angle) / factor, torch.sin(angle) / factor
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1).to(x)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
