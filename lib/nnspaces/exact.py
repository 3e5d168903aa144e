"""Exact inverse maps of SELU networks, from the vector spaces of their layers.

A Linear / SELU stack (``fcnn1``, ``fcnn5``) can be walked backward: SELU is strictly
increasing from R onto ``(-lambda*alpha, inf)``, so it has an exact inverse there, and each
linear layer ``z = W h + b`` has the pre-image set ``W^+ (z - b) + N w`` (``N`` a basis of
its null space). :class:`SeluInverter` holds every layer's SVD-derived pieces; its
:meth:`~SeluInverter.invert` walks backward choosing each null-space part closest to a prior
image, :meth:`~SeluInverter.hidden_newton` finds the first layer's pre-activation by Newton
steps instead, and :func:`exact_images` combines the two into the images
:func:`nnspaces.inversion.invert` returns for ``method="exact"``.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

#: SELU's constants (torch.nn.SELU) and the lower bound of its range, ``-lambda * alpha``.
SELU_LAMBDA = 1.0507009873554805
SELU_ALPHA = 1.6732632423543772
SELU_LOWER = -SELU_LAMBDA * SELU_ALPHA

#: Where ``exact`` takes its hidden-layer values from (see :func:`exact_images`).
HIDDEN = ("auto", "prior", "newton")


def check_selu_target(t: torch.Tensor) -> None:
    """An output that ends in SELU cannot take values <= ``SELU_LOWER``."""
    bad = t <= SELU_LOWER
    if bad.any():
        value = float(t[bad].min())
        raise ValueError(
            f"target value {value:.6g} is below SELU's lower bound {SELU_LOWER:.6g} "
            "(-lambda*alpha); a network ending in SELU never outputs it"
        )


def weights_version(model: nn.Module) -> tuple:
    """A key that changes whenever ``model``'s weights do (storage pointer and in-place
    version counter of every parameter and buffer), for caches of derived objects."""
    return tuple((t.data_ptr(), t._version) for t in (*model.parameters(), *model.buffers()))


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
class _LinearLayer:
    """One Linear layer ``z = W h + b`` in float64 with its SVD-derived pieces."""

    W: np.ndarray  # (m, n)
    b: np.ndarray  # (m,)
    pinv: np.ndarray  # (n, m)  Moore-Penrose pseudo-inverse
    null: np.ndarray  # (n, n - rank)  orthonormal null-space basis
    U: np.ndarray  # (m, rank)  column-space basis
    S: np.ndarray  # (rank,)
    selu_after: bool


@dataclass(frozen=True)
class LinearPreimage:
    """All inputs of ``z = W h + b`` that give ``z``: ``particular + null_basis @ w``.

    ``particular = W^+ (z - b)`` lies in the row space; ``null_part`` (``null_basis @ w``) is
    the chosen null-space component; ``h = particular + null_part``. Shapes ``(B, n)``.
    """

    particular: np.ndarray
    null_part: np.ndarray
    null_basis: np.ndarray

    @property
    def h(self) -> np.ndarray:
        return self.particular + self.null_part


def _svd_layer(W: np.ndarray, b: np.ndarray, selu_after: bool) -> _LinearLayer:
    U, S, Vh = np.linalg.svd(W, full_matrices=True)
    tol = S.max() * max(W.shape) * np.finfo(np.float64).eps if S.size else 0.0
    r = int(np.sum(S > tol))
    pinv = Vh[:r].T @ (U[:, :r] / S[:r]).T
    return _LinearLayer(W, b, pinv, Vh[r:].T.copy(), U[:, :r], S[:r], selu_after)


def linear_preimage(
    weight: np.ndarray | torch.Tensor,
    bias: np.ndarray | torch.Tensor | None,
    z: np.ndarray | torch.Tensor,
    *,
    prior: np.ndarray | torch.Tensor | None = None,
    null_coeffs: np.ndarray | None = None,
) -> LinearPreimage:
    """Pre-images of ``z`` ``(B, m)`` under ``h -> W h + b`` (``W`` ``(m, n)``), float64.

    The null-space part is ``N N^T (prior - particular)`` (the pre-image closest to
    ``prior``, ``(B, n)``) or ``N @ null_coeffs`` (``(B, n - rank)``), or zero.
    """
    W = torch.as_tensor(weight).detach().cpu().double().numpy()
    b = np.zeros(W.shape[0]) if bias is None else torch.as_tensor(bias).cpu().double().numpy()
    layer = _svd_layer(W, b, False)
    Z = np.atleast_2d(torch.as_tensor(z).detach().cpu().double().numpy())
    part = (Z - b) @ layer.pinv.T
    N = layer.null
    if prior is not None and null_coeffs is not None:
        raise ValueError("give prior or null_coeffs, not both")
    if prior is not None:
        P = np.atleast_2d(torch.as_tensor(prior).detach().cpu().double().numpy())
        null = (P - part) @ N @ N.T
    elif null_coeffs is not None:
        null = np.atleast_2d(null_coeffs) @ N.T
    else:
        null = np.zeros_like(part)
    return LinearPreimage(part, null, N)


def _project_bounded(
    layer: _LinearLayer, d: np.ndarray, q: np.ndarray, lo: float, hi: float
) -> np.ndarray | None:
    """The point closest to ``q`` of ``{h : W h = d, lo <= h <= hi}``; None if that set is empty.

    Hand-written because SciPy has no quadratic-programming solver: SLSQP needs ~100x longer
    on these 100-800 variable problems and says nothing reliable about infeasibility. This
    is the standard semismooth Newton method on the dual (``h(y) = clip(q + W^T y, lo, hi)``,
    solve ``W h(y) = d`` for the multipliers ``y``; Armijo line search on the concave dual),
    which converges in a few steps and whose answer satisfies the KKT conditions exactly.
    When it does not converge, :func:`scipy.optimize.linprog` (HiGHS) decides: infeasible, or
    a feasible point closest to ``q`` in the L1 norm.
    """
    W = layer.W
    m = W.shape[0]
    scale = max(1.0, float(np.abs(d).max()))

    def primal(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g = q + W.T @ y
        return np.clip(g, lo, hi), g

    def dual(y: np.ndarray) -> float:
        h, _ = primal(y)
        return 0.5 * float(np.sum((h - q) ** 2)) + float(y @ (d - W @ h))

    # Start from the multipliers of the unconstrained projection: y = (W W^T)^+ (d - W q).
    y = layer.U @ ((layer.U.T @ (d - W @ q)) / layer.S**2)
    for _ in range(100):
        h, g = primal(y)
        res = d - W @ h
        if np.linalg.norm(res) <= 1e-11 * scale * math.sqrt(m):
            free = (g > lo) & (g < hi)
            Wf = W[:, free]
            # one exact correction on the free set: W h = d to rounding error
            corr, *_ = np.linalg.lstsq(Wf, res, rcond=None)
            h = h.copy()
            h[free] += corr
            return h
        free = (g > lo) & (g < hi)
        Wf = W[:, free]
        A = Wf @ Wf.T
        A[np.diag_indices(m)] += 1e-12 * (np.trace(A) / m + 1.0)
        dy = np.linalg.solve(A, res)
        theta, slope, step = dual(y), float(res @ dy), 1.0
        while step > 1e-12 and dual(y + step * dy) < theta + 1e-4 * step * slope:
            step *= 0.5
        y = y + step * dy
    return _lp_closest(W, d, q, lo, hi)


def _lp_closest(
    W: np.ndarray, d: np.ndarray, q: np.ndarray, lo: float, hi: float
) -> np.ndarray | None:
    """The L1-closest point to ``q`` with ``W h = d`` and ``lo <= h <= hi`` (HiGHS), or None
    when no such point exists. Variables ``(h, u)`` with ``|h - q| <= u``, minimise sum(u)."""
    from scipy.optimize import linprog
    from scipy.sparse import bmat, csr_matrix, eye

    m, n = W.shape
    c = np.concatenate([np.zeros(n), np.ones(n)])
    eye_n = eye(n, format="csr")
    A_ub = bmat([[eye_n, -eye_n], [-eye_n, -eye_n]], format="csr")
    b_ub = np.concatenate([q, -q])
    A_eq = bmat([[csr_matrix(W), csr_matrix((m, n))]], format="csr")
    box = (lo if math.isfinite(lo) else None, hi if math.isfinite(hi) else None)
    bounds = [box] * n + [(0, None)] * n
    res = linprog(c, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=d, bounds=bounds, method="highs")
    if res.status != 0:
        return None
    h = res.x[:n]
    # HiGHS meets W h = d to ~1e-9; one minimum-norm correction makes it exact
    return h + np.linalg.lstsq(W, d - W @ h, rcond=None)[0]


class SeluInverter:
    """Exact inverse maps of a Linear / SELU network, with its SVDs computed once.

    ``model`` is an ``nn.Sequential`` of an optional ``Flatten`` then ``Linear`` layers, each
    optionally followed by ``SELU`` (``fcnn1``, ``fcnn5``, or any such stack). Get one with
    :func:`selu_inverter`, which caches it per model while its weights stay the same.
    """

    def __init__(self, model: nn.Module):
        mods = [m for m in model.modules() if not isinstance(m, nn.Sequential)]
        if not isinstance(model, nn.Sequential) or not mods:
            raise ValueError(
                f"exact inversion needs an nn.Sequential of Linear / SELU layers; "
                f"got {type(model).__name__}"
            )
        if isinstance(mods[0], nn.Flatten):
            mods = mods[1:]
        layers: list[_LinearLayer] = []
        for i, m in enumerate(mods):
            if isinstance(m, nn.Linear):
                W = m.weight.detach().cpu().double().numpy()
                b = (
                    m.bias.detach().cpu().double().numpy()
                    if m.bias is not None
                    else np.zeros(W.shape[0])
                )
                selu = i + 1 < len(mods) and isinstance(mods[i + 1], nn.SELU)
                layers.append(_svd_layer(W, b, selu))
            elif isinstance(m, nn.SELU):
                if i == 0 or not isinstance(mods[i - 1], nn.Linear):
                    raise ValueError("exact inversion: every SELU must follow a Linear layer")
            else:
                raise ValueError(
                    f"exact inversion needs Linear / SELU layers only; found "
                    f"{type(m).__name__} (use method 'newton' or 'descent' for this network)"
                )
        if not layers:
            raise ValueError("exact inversion: the network has no Linear layer")
        self.layers = layers

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
        # closest point of the affine pre-image set W^+ D + N w to Q:
        H = Q + (D - Q @ layer.W.T) @ layer.pinv.T
        for i in np.flatnonzero(ok):
            where = f"layer {k + 1} of {L}"
            if np.linalg.norm(layer.W @ H[i] - D[i]) > 1e-8 * max(1.0, np.linalg.norm(D[i])):
                ok[i] = False
                reasons[i] = f"{where}: its required value is outside the layer's range"
            elif np.any(H[i] < lo) or np.any(H[i] > hi):
                h = _project_bounded(layer, D[i], Q[i], lo, hi)
                if h is not None:
                    H[i] = h
                    continue
                ok[i] = False
                what = (
                    f"inside SELU's range (every value > {lo:.4f})"
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
        prior: np.ndarray,
        *,
        margin: float = 1e-3,
        box: tuple[float, float] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """The backward walk: inputs ``(B, n)`` that give outputs ``T`` ``(B, K)``.

        From the last layer down: invert SELU exactly, then take the pre-image of the linear
        layer closest to the ``prior`` image's activation there (``(B, n)`` inputs), with
        every value that a SELU produced kept above ``SELU_LOWER + margin`` (and, with
        ``box``, the input inside ``[lo, hi]``). Greedy: a choice at one layer can leave no
        admissible choice at the layer below; such rows fail with a reason, their ``X`` NaN.
        Returns ``(X, success (B,), reasons)``.
        """
        T = np.atleast_2d(np.asarray(T, dtype=np.float64))
        if self.ends_in_selu:
            check_selu_target(torch.from_numpy(T))
        acts = self.forward(np.asarray(prior, dtype=np.float64))
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
            H = self.solve_layer(k, Z - layer.b, acts[k], lo, hi, ok, reasons)
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
    """Exact inverse images ``(C, *shape)`` for targets ``t`` ``(C, K)`` (float64), with
    prior images ``x0`` ``(C, *shape)``; also success ``(C,)``, reasons, and the path used.

    ``prior``: the backward walk of :meth:`SeluInverter.invert`, every hidden layer closest
    to the prior image's activations. ``newton``: the hidden values come from minimum-norm
    Newton root finding on the first layer's pre-activation ``z1`` (free: the first layer has
    full row rank, so every ``z1`` has pre-images, and every hidden value is a SELU output,
    inside SELU's range by construction); the image is then the pre-image of ``z1`` closest
    to the prior, computed from the first layer's vector spaces. ``auto``: ``prior`` for a
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
        hidden = "prior" if len(inverter.layers) == 1 else "newton"
    if hidden == "prior":
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
