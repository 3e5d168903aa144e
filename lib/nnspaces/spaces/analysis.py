"""Every layer of any torch model as linear algebra: one row per weight matrix.

    table = analyze(model, data)           # a pandas DataFrame, one row per layer or head
    table.to_csv("layers.csv")

:func:`analyze` walks the model and gives each map it can analyse one row:

- ``Linear``: its weight;
- ``Conv1d`` / ``Conv2d``: the convolution operator on the input the layer actually sees
  (:mod:`nnspaces.spaces.operators`), beside the paper's kernel-matrix condition number;
- ``MultiheadAttention``: per head, the query, key and value projections (``d_head x E``)
  and the head's slice of the output projection (``E x d_head``);
- ``Embedding``: the map from one-hot indices to vectors (``dim x num_embeddings``).

Columns: the matrix's shape, rank, condition number (over the nonzero singular values, as the
paper defines it; ``condition_number_all`` over all of them, the numerically zero ones too), the
null-space and left-null-space dimensions, the largest and smallest nonzero singular values,
and with ``data`` the fraction of the energy of the layer's real inputs (captured by forward
hooks on a batch of test images) that lies in its row space: what the layer can see. Every
other module, and every parameter that is not a layer's weight, is listed too with
``analysed = False`` and the reason: nothing is skipped silently.

Attention, head by head (e.g. the registry's ``vit``: 4 layers x 4 heads)::

    heads = attention_heads(analyze(model, data))     # one row per layer and head
    heads.pivot(index=["layer", "head"], columns="projection", values="condition_number")
    S = np.linalg.svd(head_matrices(attn)[0, "Q"], compute_uv=False)   # one head's spectrum
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from ..models import REGISTRY, frozen, network_name
from .conv_spectra import layer_spectrum
from .layer import condition_number, conv_as_matrix
from .operators import ConvOperator, Spectrum, spectrum, spectrum_and_energy

COLUMNS = (
    "layer",
    "type",
    "matrix",
    "analysed",
    "shape",
    "rank",
    "condition_number",
    "condition_number_all",
    "null_dim",
    "left_null_dim",
    "sigma_max",
    "sigma_min",
    "kernel_condition_number",
    "method",
    "input_energy_in_row_space",
    "reason",
)
_NO_WEIGHTS = "no weights: a fixed elementwise, pooling or reshaping step, not a matrix"
_REASONS = {
    nn.modules.batchnorm._NormBase: "normalisation: a per-channel scale and shift (a "
    "diagonal map that depends on the batch statistics), not a weight matrix",
    nn.LayerNorm: "normalisation: a per-token scale and shift, not a weight matrix",
    nn.GroupNorm: "normalisation: a per-group scale and shift, not a weight matrix",
}


def _row(layer: str, module: nn.Module, matrix: str, **values: Any) -> dict[str, Any]:
    row = dict.fromkeys(COLUMNS)
    row.update(layer=layer, type=type(module).__name__, matrix=matrix, analysed=True, reason="")
    row.update(values)
    return row


def _skip(layer: str, kind: str, reason: str) -> dict[str, Any]:
    row = dict.fromkeys(COLUMNS)
    row.update(layer=layer, type=kind, matrix="", analysed=False, reason=reason)
    return row


def _spectrum_values(spec: Spectrum) -> dict[str, Any]:
    m, n = spec.shape
    return {
        "shape": f"{m} x {n}",
        "rank": spec.rank,
        "condition_number": spec.condition_number,
        "condition_number_all": spec.condition_number_all,
        "null_dim": spec.null_dim,
        "left_null_dim": spec.left_null_dim,
        "sigma_max": spec.sigma_max,
        "sigma_min": spec.sigma_min,
        "method": spec.method,
    }


def _dense(W: np.ndarray, inputs: torch.Tensor | None, eps: float) -> tuple[Spectrum, float | None]:
    """``W``'s spectrum and the fraction of the inputs' energy (flattened to ``W``'s width) in
    its row space (None without inputs)."""
    if inputs is None:
        return spectrum(W, eps=eps), None
    X = inputs.detach().to("cpu", torch.float64).reshape(-1, W.shape[1]).numpy()
    return spectrum_and_energy(W, X, eps=eps)


def _matrix_row(layer, module, label, W, inputs, eps) -> dict[str, Any]:
    spec, energy = _dense(W, inputs, eps)
    return _row(layer, module, label, **_spectrum_values(spec), input_energy_in_row_space=energy)


#: The four maps of one attention head, in the order :func:`analyze` lists them.
PROJECTIONS = ("Q", "K", "V", "output")


def head_matrices(mha: nn.MultiheadAttention) -> dict[tuple[int, str], np.ndarray]:
    """Every head's maps as float64 matrices, keyed ``(head, projection)`` with projection
    one of :data:`PROJECTIONS`: the query, key and value projections (``d_head x E``, the
    head's rows of the input projection) and the head's columns of the output projection
    (``E x d_head``). :func:`analyze` gives each one row."""
    E, h = mha.embed_dim, mha.num_heads
    d = E // h
    if mha._qkv_same_embed_dim:
        Wq, Wk, Wv = mha.in_proj_weight.detach().double().cpu().numpy().reshape(3, E, -1)
    else:
        Wq, Wk, Wv = (
            getattr(mha, f"{p}_proj_weight").detach().double().cpu().numpy() for p in "qkv"
        )
    Wo = mha.out_proj.weight.detach().double().cpu().numpy()
    out = {}
    for head in range(h):
        rows = slice(head * d, (head + 1) * d)
        out.update({(head, "Q"): Wq[rows], (head, "K"): Wk[rows], (head, "V"): Wv[rows]})
        out[head, "output"] = Wo[:, rows]
    return out


def _attention_rows(name: str, mha: nn.MultiheadAttention, inputs, eps) -> Iterator[dict]:
    q, k, v = inputs if inputs is not None else (None, None, None)
    x = {"Q": q, "K": k, "V": v, "output": None}
    for (head, label), W in head_matrices(mha).items():
        row = _matrix_row(name, mha, f"head {head} {label} projection", W, x[label], eps)
        if label == "output" and inputs is not None:
            row["reason"] = "input energy: the heads' outputs are not a module's input"
        yield row


def attention_heads(table):
    """The attention rows of an :func:`analyze` table, one per layer, head and projection,
    with ``head`` (an int) and ``projection`` (one of :data:`PROJECTIONS`) as columns."""
    rows = table[table["type"] == "MultiheadAttention"]
    parts = rows["matrix"].str.extract(r"^head (\d+) (\w+) projection$")
    rows = rows.assign(head=parts[0].astype(int), projection=parts[1])
    keep = ["layer", "head", "projection"] + [c for c in COLUMNS if c not in ("layer", "type")]
    return rows[keep].reset_index(drop=True)


def _lanczos_values(conv, op: ConvOperator, eps: float, max_steps: int, real: bool) -> dict:
    """A large operator's row matrix-free (:func:`~nnspaces.spaces.conv_spectra.layer_spectrum`):
    values that are bounds, not exact, are named in ``reason``; the null-space dimension and
    rank only where exact, ``sigma_min`` only where exact and nonzero."""
    s = layer_spectrum(
        conv, op.input_shape, max_steps=max_steps, eps=eps, upper_bound=False, circular=False
    )
    m, n = s.shape
    exact = s.null_dim_label == "exact"
    rank = n - s.null_dim if exact else None
    tol = s.sigma_max * max(m, n) * eps
    nonzero = s.sigma_min_label == "exact" and s.sigma_min > tol
    bounds = [f"sigma_max is a {s.sigma_max_label}"] if s.sigma_max_label != "exact" else []
    if not exact:
        bounds.append(f"null_dim is at least {s.null_dim}")
    if s.sigma_min_label != "exact":
        bounds.append(f"the smallest singular value is at most {s.sigma_min:.4g}")
    if real:
        bounds.append("input energy: needs the dense operator")
    return {
        "shape": f"{m} x {n}",
        "rank": rank,
        "condition_number": s.sigma_max / s.sigma_min if nonzero else math.nan,
        "condition_number_all": s.sigma_max / s.sigma_min
        if s.sigma_min_label == "exact" and s.sigma_min > 0
        else (math.inf if s.sigma_min == 0 and exact else math.nan),
        "null_dim": s.null_dim if exact else None,
        "left_null_dim": m - rank if exact else None,
        "sigma_max": s.sigma_max,
        "sigma_min": s.sigma_min if nonzero else math.nan,
        "method": f"lanczos ({s.lanczos_steps} steps)" if s.lanczos_steps else "structure (1 x 1)",
        "reason": "; ".join(bounds),
    }


def _conv_row(
    name, conv, x, real: bool, eps: float, dense_limit: int, max_steps: int
) -> dict[str, Any]:
    w = conv.weight.detach()
    kernel = condition_number(conv_as_matrix(w) if w.ndim == 4 else w.reshape(-1, w.shape[-1]))
    if x is None:
        return {
            **_skip(
                name,
                type(conv).__name__,
                "not called on an input: pass data or input_shape to get its operator",
            ),
            "kernel_condition_number": kernel,
        }
    op = ConvOperator(conv, tuple(x.shape[1:]))
    label = f"convolution operator on {' x '.join(map(str, op.input_shape))}"
    m, n = op.shape
    if m * n > dense_limit:
        return _row(name, conv, label, **_lanczos_values(conv, op, eps, max_steps, real),
                    kernel_condition_number=kernel)  # fmt: skip
    spec, energy = _dense(op.matrix(), x if real else None, eps)
    return _row(
        name,
        conv,
        label,
        **_spectrum_values(spec),
        kernel_condition_number=kernel,
        input_energy_in_row_space=energy,
    )


def _capture(model: nn.Module, batch: torch.Tensor) -> dict[str, Any]:
    """The inputs of every Linear, conv and attention module on ``batch`` (forward hooks)."""
    seen: dict[str, Any] = {}
    kinds = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.MultiheadAttention)

    def hook(name):
        def record(module, args, kwargs):
            if name in seen:  # a module called twice: keep the first call's input
                return
            if isinstance(module, nn.MultiheadAttention):
                q, k, v = (args + tuple(kwargs.get(n) for n in ("query", "key", "value")))[:3]
                seen[name] = (q, k, v)
            else:
                seen[name] = args[0]

        return record

    handles = [
        m.register_forward_pre_hook(hook(n), with_kwargs=True)
        for n, m in model.named_modules()
        if isinstance(m, kinds)
    ]
    try:
        with torch.no_grad():
            model(batch)
    finally:
        for h in handles:
            h.remove()
    return seen


def _batch(
    model: nn.Module, data: Any, input_shape, n_images: int
) -> tuple[torch.Tensor | None, bool]:
    """Images to run through the model: (batch, whether they are real data)."""
    if data is not None:
        x = getattr(data, "x_test", data)
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f"data must be a Dataset or a tensor of images, got {type(data).__name__}"
            )
        return x[:n_images], True
    if input_shape is None:
        name = network_name(model)
        if name in REGISTRY:
            input_shape = REGISTRY[name].input_shape
    if input_shape is None:
        return None, False
    return torch.zeros(1, *input_shape), False


def analyze(
    model: nn.Module,
    data: Any = None,
    input_shape: tuple[int, ...] | None = None,
    *,
    n_images: int = 256,
    dense_limit: int | None = None,
    eps: float | None = None,
    max_steps: int = 300,
):
    """One row per analysed matrix of ``model`` and one per module or parameter it does not
    analyse (with the reason): a pandas DataFrame with :data:`COLUMNS`.

    ``data``: a :class:`~nnspaces.data.Dataset` (its first ``n_images`` test images) or a
    tensor of inputs, whose hooked inputs give the conv operators' sizes and the
    input-energy column. Without data, ``input_shape`` (one input, no batch dimension; a
    registered network's own by default) gives the sizes, and the energy column is empty.
    ``eps``: the weights' precision for the rank tolerance (default: their dtype's).
    Convolutions over ``dense_limit`` entries are analysed matrix-free, by Lanczos with at
    most ``max_steps`` steps (:mod:`nnspaces.spaces.conv_spectra`); what that leaves a bound
    is said in ``reason``.
    """
    import pandas as pd

    from .operators import DENSE_LIMIT

    if not isinstance(model, nn.Module):
        raise TypeError(f"analyze needs a torch nn.Module, got {type(model).__name__}")
    param = next(model.parameters(), None)
    if eps is None:
        eps = float(torch.finfo(param.dtype).eps) if param is not None else 2.0**-23
    batch, real = _batch(model, data, input_shape, n_images)
    inputs = {}
    if batch is not None:
        device, dtype = (param.device, param.dtype) if param is not None else ("cpu", None)
        with frozen(model):  # eval mode for the hooked pass; the caller's mode comes back
            inputs = _capture(model, batch.to(device, dtype))
    dense_limit = DENSE_LIMIT if dense_limit is None else dense_limit
    rows, covered = [], set()
    for name, module in model.named_modules():
        x = inputs.get(name)
        kind = type(module).__name__
        leaf = not any(True for _ in module.children())
        if name in covered:
            rows.append(_skip(name, kind, "part of the attention layer above: analysed per head"))
        elif isinstance(module, nn.MultiheadAttention):
            rows += _attention_rows(name, module, x if real else None, eps)
            covered |= {f"{name}.{n}" for n, _ in module.named_modules() if n}
        elif isinstance(module, nn.Linear):
            W = module.weight.detach().double().cpu().numpy()
            rows.append(_matrix_row(name, module, "weight", W, x if real else None, eps))
        elif isinstance(module, nn.Conv1d | nn.Conv2d):
            rows.append(_conv_row(name, module, x, real, eps, dense_limit, max_steps))
        elif isinstance(module, nn.Embedding):
            W = module.weight.detach().double().cpu().numpy().T
            row = _matrix_row(name, module, "embedding (one-hot -> vector)", W, None, eps)
            row["reason"] = "input energy: its inputs are indices" if real else ""
            rows.append(row)
        elif leaf:
            reason = next((r for t, r in _REASONS.items() if isinstance(module, t)), None)
            if reason is None:
                has_weights = any(True for _ in module.parameters())
                reason = f"{kind} is not a layer type analyze knows" if has_weights else _NO_WEIGHTS
            rows.append(_skip(name, kind, reason))
        else:  # a container's own parameters (a class token, positions)
            for pname, _ in module.named_parameters(recurse=False):
                rows.append(
                    _skip(
                        f"{name}.{pname}" if name else pname,
                        "parameter",
                        "added or concatenated to the activations, not a weight matrix",
                    )
                )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def layernorm_reach(norm: nn.LayerNorm, head: nn.Linear, logits: torch.Tensor) -> np.ndarray:
    """How far each row of ``logits`` is from what ``head(norm(h))`` can output, for any h.

    A LayerNorm's normalised vector ``n = (h - mean) / std`` has mean 0 and norm ``sqrt(d)``
    (up to its eps), so the logits ``W (gamma * n + beta) + b`` lie in a bounded set. Per row,
    the smallest mean-zero ``n`` that gives those logits, divided by ``sqrt(d)``: a value
    >= 1 means no input reaches them (every solution is at least that long); below 1 they
    may be reachable. (The minimum-norm solution of the linear system with the mean-zero row
    added, by the pseudo-inverse.)
    """
    W = head.weight.detach().double().cpu()
    gamma = norm.weight.detach().double().cpu() if norm.weight is not None else 1.0
    beta = norm.bias.detach().double().cpu() if norm.bias is not None else 0.0
    Wg = W * gamma  # W diag(gamma)
    offset = W @ (beta * torch.ones(W.shape[1], dtype=torch.float64))
    if head.bias is not None:
        offset = offset + head.bias.detach().double().cpu()
    d = W.shape[1]
    A = torch.cat([Wg, torch.ones(1, d, dtype=torch.float64)])  # the last row: mean zero
    b = logits.detach().double().cpu() - offset
    b = torch.cat([b, torch.zeros(len(b), 1, dtype=torch.float64)], 1)
    n_min = torch.linalg.pinv(A) @ b.T
    return (torch.linalg.vector_norm(n_min, dim=0) / d**0.5).numpy()
