"""Exact inverse maps of SELU networks, from the vector spaces of their layers.

A Linear / SELU stack (``fcnn1``, ``fcnn5``) can be walked backward: SELU is strictly
increasing from R onto ``(-lambda*alpha, inf)``, so it has an exact inverse there, and each
linear layer ``z = W h + b`` has the pre-image set ``W^+ (z - b) + N w`` (``N`` a basis of
its null space). :class:`SeluInverter` holds one :class:`~nnspaces.spaces.layer.LayerSpaces` per
layer; its :meth:`~SeluInverter.invert` walks backward choosing each null-space part closest
to a reference image (:meth:`~nnspaces.spaces.layer.LayerSpaces.preimage`),
:meth:`~SeluInverter.hidden_newton` finds the first layer's pre-activation by Newton steps
instead, and :func:`exact_images` combines the two into the images
:func:`nnspaces.inversion.invert` returns for ``method="exact"`` (:mod:`.nullspace` draws many
inputs with one output, and asks what the pixel box can reach).
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..models import selu_stack_layers, weights_version
from ..spaces.layer import LayerSpaces, closest_in_bounds, layer_spaces

#: SELU's constants (torch.nn.SELU) and the lower bound of its range, ``-lambda * alpha``.
SELU_LAMBDA = 1.0507009873554805
SELU_ALPHA = 1.6732632423543772
SELU_LOWER = -SELU_LAMBDA * SELU_ALPHA

#: Where ``exact`` takes its hidden-layer values from (see :func:`exact_images`).
HIDDEN = ("auto", "walk", "newton")


def check_selu_target(t: torch.Tensor) -> None:
    """An output that ends in SELU cannot take values <= ``SELU_LOWER``."""
    bad = t <= SELU_LOWER
    if bad.any():
        value = float(t[bad].min())
        raise ValueError(
            f"target value {value:.6g} is below SELU's lower bound {SELU_LOWER:.6g} "
            "(-lambda*alpha); a network ending in SELU never outputs it"
        )


def selu_inverse(h: np.ndarray) -> np.ndarray:
    """SELU's exact inverse on its range ``(SELU_LOWER, inf)`` (float64 NumPy)."""
    h = np.asarray(h, dtype=np.float64)
    if np.any(h <= SELU_LOWER):
        raise ValueError(f"value {float(h.min()):.6g} is outside SELU's range (> {SELU_LOWER:.6g})")
    neg = np.log1p(np.minimum(h, 0.0) / (SELU_LAMBDA * SELU_ALPHA))
    return np.where(h > 0, h / SELU_LAMBDA, neg)


def _selu(z: np.ndarray) -> np.ndarray:
    return np.where(z > 0, SELU_LAMBDA * z, SELU_LAMBDA * SELU_ALPHA * np.expm1(np.minimum(z, 0)))


def _selu_grad(z: np.ndarray) -> np.ndarray:
    return np.where(z > 0, SELU_LAMBDA, SELU_LAMBDA * SELU_ALPHA * np.exp(np.minimum(z, 0)))


@dataclass(frozen=True, repr=False)
class SeluLayer:
    """One Linear layer ``z = W h + b`` of a SELU stack: its vector spaces (from
    :func:`nnspaces.spaces.layer.layer_spaces`), its bias, and whether SELU follows it."""

    spaces: LayerSpaces
    b: np.ndarray  # (m,)
    selu_after: bool

    @property
    def W(self) -> np.ndarray:
        return self.spaces.matrix


class SeluInverter:
    """Exact inverse maps of a Linear / SELU network, from one :class:`LayerSpaces` per layer.

    ``model`` is an ``nn.Sequential`` of an optional ``Flatten`` then ``Linear`` layers, each
    optionally followed by ``SELU`` (``fcnn1``, ``fcnn5``, or any such stack). Get one with
    :func:`selu_inverter`, which caches it per model while its weights stay the same.
    """

    def __init__(self, model: nn.Module):
        self.layers = [
            SeluLayer(
                layer_spaces(m.weight),
                np.zeros(m.out_features)
                if m.bias is None
                else m.bias.detach().cpu().double().numpy(),
                selu,
            )
            for m, selu in selu_stack_layers(model)
        ]

    @property
    def n_inputs(self) -> int:
        return self.layers[0].W.shape[1]

    @property
    def n_outputs(self) -> int:
        return self.layers[-1].W.shape[0]

    @property
    def ends_in_selu(self) -> bool:
        return self.layers[-1].selu_after

    def forward(self, X: np.ndarray) -> list[np.ndarray]:
        """Inputs of every Linear layer and the final output, for inputs ``X`` ``(B, n)``."""
        acts = [np.asarray(X, dtype=np.float64)]
        for layer in self.layers:
            z = acts[-1] @ layer.W.T + layer.b
            acts.append(_selu(z) if layer.selu_after else z)
        return acts

    def _from_first(
        self, Z1: np.ndarray, jacobian: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Outputs ``(B, K)`` and their Jacobians ``(B, K, m1)`` with respect to the first
        layer's pre-activation ``Z1`` ``(B, m1)``: ``J = D_L W_L ... D_2 W_2 D_1`` with ``D``
        the SELU derivatives (identity where a layer has no SELU), accumulated from the top."""
        Z = [Z1]
        for layer in self.layers[1:]:
            prev = self.layers[len(Z) - 1]
            H = _selu(Z[-1]) if prev.selu_after else Z[-1]
            Z.append(H @ layer.W.T + layer.b)
        last = self.layers[-1]
        out = _selu(Z[-1]) if last.selu_after else Z[-1]
        if not jacobian:
            return out, None
        J = np.broadcast_to(np.eye(out.shape[1]), (len(Z1), out.shape[1], out.shape[1]))
        for k in reversed(range(len(self.layers))):
            if self.layers[k].selu_after:
                J = J * _selu_grad(Z[k])[:, None, :]
            if k > 0:
                J = J @ self.layers[k].W
        return out, J

    def hidden_newton(
        self, T: np.ndarray, Z0: np.ndarray, *, steps: int = 60, tol: float = 1e-13
    ) -> np.ndarray:
        """A first-layer pre-activation ``Z1`` ``(B, m1)`` whose forward pass gives ``T``:
        minimum-norm Newton steps ``dz = J^T (J J^T)^{-1} (T - f(z))`` from ``Z0``, each halved
        until the residual drops (Armijo; at most 30 halvings). Rows stop at relative error
        ``tol``; a row whose step cannot improve stays where it is."""
        Z = np.array(Z0, dtype=np.float64)
        T = np.asarray(T, dtype=np.float64)
        tn = np.maximum(np.linalg.norm(T, axis=1), 1e-300)
        out, J = self._from_first(Z)
        J = J.copy()
        R = T - out
        active = np.ones(len(Z), dtype=bool)
        eye = np.eye(T.shape[1])
        for _ in range(steps):
            rn = np.linalg.norm(R, axis=1)
            active &= rn / tn > tol
            idx = np.flatnonzero(active)
            if not len(idx):
                break
            Ji = J[idx]
            A = Ji @ Ji.transpose(0, 2, 1)
            A = A + 1e-14 * np.trace(A, axis1=1, axis2=2)[:, None, None] * eye
            dz = (Ji.transpose(0, 2, 1) @ np.linalg.solve(A, R[idx][..., None]))[..., 0]
            alpha = np.ones(len(idx))
            todo = np.ones(len(idx), dtype=bool)
            for _ in range(30):
                trial = Z[idx] + alpha[:, None] * dz
                r = T[idx] - self._from_first(trial, jacobian=False)[0]
                good = todo & (np.linalg.norm(r, axis=1) <= (1 - 1e-4 * alpha) * rn[idx])
                Z[idx[good]], R[idx[good]] = trial[good], r[good]
                todo &= ~good
                if not todo.any():
                    break
                alpha = np.where(todo, alpha / 2, alpha)
            active[idx[todo]] = False  # no step improved these rows: they have stalled
            moved = idx[~todo]
            if len(moved):
                J[moved] = self._from_first(Z[moved])[1]
        return Z

    def solve_layer(
        self,
        k: int,
        D: np.ndarray,
        Q: np.ndarray,
        lo: float,
        hi: float,
        ok: np.ndarray,
        reasons: list[str],
    ) -> np.ndarray:
        """Rows ``h`` of ``W_k h = D`` ``(B, m)`` closest to ``Q`` ``(B, n)`` with ``lo <= h <=
        hi``, for the rows still ``ok``. Where none exists, that row of ``ok`` becomes False,
        its reason says why, and its ``h`` is NaN (``ok`` and ``reasons`` change in place)."""
        layer, L = self.layers[k], len(self.layers)
        # the point of the affine pre-image set W^+ D + N w closest to Q
        pre = layer.spaces.preimage(D, reference=Q)
        H = pre.x
        for i in np.flatnonzero(ok):
            where = f"layer {k + 1} of {L}"
            if np.linalg.norm(pre.residual[i]) > 1e-8 * max(1.0, np.linalg.norm(D[i])):
                ok[i] = False
                reasons[i] = f"{where}: its required value is outside the layer's range"
            elif np.any(H[i] < lo) or np.any(H[i] > hi):
                h = closest_in_bounds(layer.spaces, D[i], Q[i], lo, hi)
                if h is not None:
                    H[i] = h
                    continue
                ok[i] = False
                what = (
                    f"inside SELU's range, kept a margin from its bound (every value > "
                    f"{lo:.4f}: the bound {SELU_LOWER:.4f} plus {lo - SELU_LOWER:.1g})"
                    if k > 0
                    else f"inside the box [{lo:g}, {hi:g}]"
                )
                proof = (
                    "so the target is unreachable"
                    if k == L - 1
                    else "for the values chosen at the layers after it"
                )
                reasons[i] = f"{where}: no input {what} gives the required value, {proof}"
        H[~ok] = np.nan
        return H

    def invert(
        self,
        T: np.ndarray,
        reference: np.ndarray,
        *,
        margin: float = 1e-3,
        box: tuple[float, float] | None = None,
        noise: float = 0.0,
        rng: np.random.Generator | None = None,
    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """The backward walk: inputs ``(B, n)`` that give outputs ``T`` ``(B, K)``.

        From the last layer down: invert SELU exactly, then take the pre-image of the linear
        layer closest to the ``reference`` image's activation there (``(B, n)`` inputs), with
        every value that a SELU produced kept above ``SELU_LOWER + margin`` (and, with
        ``box``, the input inside ``[lo, hi]``). Greedy: a choice at one layer can leave no
        admissible choice at the layer below; such rows fail with a reason, their ``X`` NaN.
        Returns ``(X, success (B,), reasons)``.
        """
        T = np.atleast_2d(np.asarray(T, dtype=np.float64))
        if self.ends_in_selu:
            check_selu_target(torch.from_numpy(T))
        acts = self.forward(np.asarray(reference, dtype=np.float64))
        ok = np.ones(len(T), dtype=bool)
        reasons = [""] * len(T)
        H = T
        for k in reversed(range(len(self.layers))):
            layer = self.layers[k]
            Z = H.copy()
            if layer.selu_after:
                Z[ok] = selu_inverse(H[ok])
            if k > 0 and self.layers[k - 1].selu_after:
                lo, hi = SELU_LOWER + margin, math.inf
            elif k == 0 and box is not None:
                lo, hi = box
            else:
                lo, hi = -math.inf, math.inf
            Q, null = acts[k], layer.spaces.null_space
            if noise > 0 and null.shape[1]:
                rms = np.sqrt(np.mean(Q**2, axis=1, keepdims=True)) + 1e-12
                Q = Q + noise * rms * (rng.standard_normal((len(Q), null.shape[1])) @ null.T)
            H = self.solve_layer(k, Z - layer.b, Q, lo, hi, ok, reasons)
        return H, ok, reasons


_INVERTERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def selu_inverter(model: nn.Module) -> SeluInverter:
    """The :class:`SeluInverter` of ``model``, cached while its weights stay the same."""
    version = weights_version(model)
    hit = _INVERTERS.get(model)
    if hit is not None and hit[0] == version:
        return hit[1]
    inv = SeluInverter(model)
    _INVERTERS[model] = (version, inv)
    return inv


def exact_images(
    inverter: SeluInverter,
    t: torch.Tensor,
    x0: torch.Tensor,
    *,
    margin: float,
    hidden: str,
    tol: float = 1e-4,
) -> tuple[torch.Tensor, np.ndarray, list[str], str]:
    """Exact inverse images ``(C, *shape)`` for targets ``t`` ``(C, K)`` (float64), each the
    pre-image closest to its reference image in ``x0`` ``(C, *shape)``; also success
    ``(C,)``, reasons, and the path used.

    ``walk``: the backward walk of :meth:`SeluInverter.invert`, every hidden layer closest
    to the reference image's activations. ``newton``: the hidden values come from minimum-norm
    Newton root finding on the first layer's pre-activation ``z1`` (free: the first layer has
    full row rank, so every ``z1`` has pre-images, and every hidden value is a SELU output,
    inside SELU's range by construction); the image is then the pre-image of ``z1`` closest
    to the reference, from the first layer's vector spaces. ``auto``: ``walk`` for a
    one-layer network (a closed form there), ``newton`` otherwise: the greedy walk fails on
    fcnn5 even for moderate targets, because its square 256x256 layer leaves no freedom;
    where Newton stalls (relative error above ``tol``), the walk is tried, which succeeds or
    says at which layer the target is out of reach.
    """
    C = len(t)
    P = x0.double().reshape(C, -1).numpy()
    if inverter.ends_in_selu:
        check_selu_target(t)
    auto = hidden == "auto"
    if auto:
        hidden = "walk" if len(inverter.layers) == 1 else "newton"
    if hidden == "walk":
        X, ok, reasons = inverter.invert(t.numpy(), P, margin=margin)
    else:
        first = inverter.layers[0]
        z1 = inverter.hidden_newton(t.numpy(), P @ first.W.T + first.b)
        ok, reasons = np.ones(C, dtype=bool), [""] * C
        X = inverter.solve_layer(0, z1 - first.b, P, -math.inf, math.inf, ok, reasons)
        out = inverter.forward(X)[-1]
        err = np.linalg.norm(out - t.numpy(), axis=1) / np.linalg.norm(t.numpy(), axis=1)
        missed = np.flatnonzero(~(err <= tol))
        if len(missed) and auto:
            # Newton stalled: the walk either succeeds or says where the target is out of reach
            Xw, okw, rw = inverter.invert(t.numpy()[missed], P[missed], margin=margin)
            for j, i in enumerate(missed):
                if okw[j]:
                    X[i] = Xw[j]
                else:
                    reasons[i] = f"Newton stalled at error {err[i]:.2g}; backward walk: {rw[j]}"
                    ok[i], X[i] = False, np.nan
    return torch.from_numpy(X).reshape(x0.shape), ok, reasons, hidden
