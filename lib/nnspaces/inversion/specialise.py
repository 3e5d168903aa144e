"""A faster, equivalent copy of a network for one input size, for the iterative solvers.

Inverting a network runs it forward and backward hundreds of times on inputs of one size.
At that size two rewrites give the same function with less work:

* **BatchNorm folding.** In eval mode a BatchNorm after a convolution is a per-channel affine
  map; it folds into the convolution's weights and bias (``w * s``, ``b * s + beta - mean *
  s`` with ``s = gamma / sqrt(var + eps)``).
* **Kernel trimming.** A kernel tap that only ever meets zero padding contributes nothing.
  ResNet18's last stage sees 1 x 1 feature maps of a 28 x 28 digit: its 3 x 3 kernels are their
  centre taps, a ninth of the work.

The graph comes from ``torch.fx``; a model it cannot trace, or one with nothing to rewrite,
is used as it is (the reason is kept). :func:`specialise` checks the copy against the
original on random inputs and raises if they disagree, so a wrong rewrite cannot pass
silently. ``bench/inversion.py --plain`` runs the solvers on the networks as they are, for
comparison (on ResNet18 the specialised copy takes about 0.6 to 0.7 of the time).
"""

from __future__ import annotations

import copy
import weakref
from dataclasses import dataclass, field

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from ..models import full_float32, weights_version


@dataclass
class Specialised:
    """The equivalent copy (``model``), the input shape it is for (without the batch), what
    was rewritten, and why nothing was (``reason``, empty when the model was traced)."""

    model: nn.Module
    input_shape: tuple[int, ...]
    folded: list[str] = field(default_factory=list)  # BatchNorm layers folded away
    # each folded BatchNorm (the original module) by the convolution it was folded into
    bn_of: dict[str, nn.BatchNorm2d] = field(default_factory=dict)
    trimmed: dict[str, tuple[tuple[int, int], tuple[int, int]]] = field(default_factory=dict)
    reason: str = ""

    def summary(self) -> str:
        if self.reason:
            return f"used as it is: {self.reason}"
        shapes = ", ".join(f"{n} {a}->{b}" for n, (a, b) in self.trimmed.items())
        return (
            f"{len(self.folded)} BatchNorm layers folded, {len(self.trimmed)} kernels trimmed"
            + (f" ({shapes})" if shapes else "")
        )


def _trim_range(k: int, stride: int, padding: int, size: int) -> tuple[int, int]:
    """The first and last kernel taps along one axis that meet a real input (not padding)
    for an input of ``size`` (dilation 1)."""
    n_out = (size + 2 * padding - k) // stride + 1
    used = [j for j in range(k) if any(0 <= o * stride - padding + j < size for o in range(n_out))]
    return used[0], used[-1]


def bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """An eval-mode BatchNorm as ``s * (z - running_mean) + beta``: its scale ``s = gamma /
    sqrt(running_var + eps)`` and shift ``beta`` (1 and 0 without affine parameters)."""
    gamma = bn.weight.detach() if bn.weight is not None else torch.ones_like(bn.running_var)
    beta = bn.bias.detach() if bn.bias is not None else torch.zeros_like(bn.running_mean)
    return gamma / torch.sqrt(bn.running_var + bn.eps), beta


def _rewrite_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d | None, in_hw: tuple[int, int]):
    """A plain Conv2d equal to ``bn(conv(x))`` on inputs of spatial size ``in_hw``, and the
    kernel size before and after trimming (None when it was not trimmed)."""
    w = conv.weight.detach()
    b = conv.bias.detach() if conv.bias is not None else torch.zeros_like(w[:, 0, 0, 0])
    if bn is not None:
        s, beta = bn_affine(bn)
        w, b = w * s.view(-1, 1, 1, 1), (b - bn.running_mean) * s + beta
    stride, padding, trim = conv.stride, conv.padding, None
    simple = (
        conv.dilation == (1, 1) and conv.padding_mode == "zeros" and not isinstance(padding, str)
    )
    if simple:
        (a0, a1), (b0, b1) = (
            _trim_range(w.shape[2 + ax], stride[ax], padding[ax], in_hw[ax]) for ax in (0, 1)
        )
        new_pad = (padding[0] - a0, padding[1] - b0)
        new_k = (a1 - a0 + 1, b1 - b0 + 1)
        same_size = all(
            (in_hw[ax] + 2 * padding[ax] - w.shape[2 + ax]) // stride[ax]
            == (in_hw[ax] + 2 * new_pad[ax] - new_k[ax]) // stride[ax]
            for ax in (0, 1)
        )
        if same_size and new_k != tuple(w.shape[2:]):
            trim = (tuple(w.shape[2:]), new_k)
            w, padding = w[:, :, a0 : a1 + 1, b0 : b1 + 1], new_pad
    out = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        tuple(w.shape[2:]),
        stride=stride,
        padding=padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
    ).to(w)
    with torch.no_grad():
        out.weight.copy_(w)
        out.bias.copy_(b)
    return out, trim


def specialise(
    model: nn.Module, input_shape: tuple[int, ...], *, check_tol: float = 1e-4
) -> Specialised:
    """An equivalent copy of ``model`` (eval mode, frozen) for inputs of ``input_shape``
    (without the batch): BatchNorm folded into the convolution before it, kernels trimmed
    to the taps that meet the input. ``model`` itself is never changed; it comes back as it
    is where nothing applies (``reason`` says why: untraceable, nothing to rewrite). Raises a
    RuntimeError when the copy's outputs differ from the original's by more than
    ``check_tol`` relative on random inputs."""
    input_shape = tuple(int(s) for s in input_shape)
    p = next(model.parameters())
    work = copy.deepcopy(model).eval()
    try:
        gm = fx.symbolic_trace(work)
        ShapeProp(gm).propagate(torch.zeros(1, *input_shape, dtype=p.dtype, device=p.device))
    except Exception as e:  # noqa: BLE001 -- any tracing failure: use the model as it is
        first = str(e).splitlines()[0] if str(e) else ""
        return Specialised(model, input_shape, reason=f"torch.fx cannot trace it ({first[:120]})")
    mods = dict(gm.named_modules())
    result = Specialised(gm, input_shape)
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or type(mods[node.target]) is not nn.Conv2d:
            continue
        users = list(node.users)
        bn_node = None
        if len(users) == 1 and users[0].op == "call_module":
            cand = mods[users[0].target]
            if type(cand) is nn.BatchNorm2d and cand.track_running_stats:
                bn_node = users[0]
        in_hw = tuple(node.args[0].meta["tensor_meta"].shape[2:])
        bn = mods[bn_node.target] if bn_node is not None else None
        new, trim = _rewrite_conv(mods[node.target], bn, in_hw)
        _set_submodule(gm, node.target, new)
        if trim is not None:
            result.trimmed[node.target] = trim
        if bn_node is not None:
            bn_node.replace_all_uses_with(node)
            gm.graph.erase_node(bn_node)
            result.folded.append(bn_node.target)
            result.bn_of[node.target] = bn
    if not result.folded and not result.trimmed:
        return Specialised(model, input_shape, reason="nothing to fold or trim")
    gm.graph.lint()
    gm.recompile()
    gm.delete_all_unused_submodules()
    for q in gm.parameters():
        q.requires_grad_(False)
    _check(model, gm, input_shape, check_tol)
    return result


def _set_submodule(root: nn.Module, target: str, module: nn.Module) -> None:
    parent, _, name = target.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)


@torch.no_grad()
def _check(model: nn.Module, copy_: nn.Module, input_shape: tuple[int, ...], tol: float) -> None:
    p = next(model.parameters())
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, *input_shape, generator=g, dtype=torch.float32).to(p)
    was = model.training
    model.eval()
    try:
        with torch.no_grad(), full_float32():
            a, b = model(x), copy_(x)
    finally:
        model.train(was)
    err = float((a - b).norm() / a.norm().clamp_min(1e-30))
    if not err <= tol:
        raise RuntimeError(
            f"the specialised copy differs from the model by {err:.2e} relative (> {tol:g})"
        )


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def specialised(model: nn.Module, input_shape: tuple[int, ...]) -> Specialised:
    """:func:`specialise`, cached per model and input shape while its weights stay the same.
    Where the model is used as it is, only the reason is cached (an entry that held the
    model itself would keep it alive in this weak-keyed cache)."""
    per_model = _CACHE.setdefault(model, {})
    key, version = tuple(int(s) for s in input_shape), weights_version(model)
    hit = per_model.get(key)
    if hit is None or hit[0] != version:
        s = specialise(model, key)
        hit = per_model[key] = (version, s if s.model is not model else s.reason)
    found = hit[1]
    return found if isinstance(found, Specialised) else Specialised(model, key, reason=found)
