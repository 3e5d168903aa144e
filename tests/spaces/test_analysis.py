"""analyze(): one row per matrix of any model, checked against separate computations, and
every other module listed with its reason."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nnspaces.models import build_model, frozen
from nnspaces.spaces.analysis import PROJECTIONS, analyze, attention_heads, head_matrices


class Mixed(nn.Module):
    """A conv, a norm, tokens, a learned token, attention, a head, and an unused embedding."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.ReLU()
        self.proj = nn.Linear(4, 8)
        self.token = nn.Parameter(torch.randn(1, 1, 8))
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 3)
        self.embed = nn.Embedding(7, 5)

    def features(self, x):
        h = self.act(self.bn(self.conv(x)))  # (N, 4, 3, 3)
        t = self.proj(h.flatten(2).transpose(1, 2))  # (N, 9, 8)
        t = torch.cat([self.token.expand(len(x), -1, -1), t], dim=1)
        return self.attn(t, t, t, need_weights=False)[0][:, 0]

    def forward(self, x):
        return self.head(self.features(x))


def _row(df, layer, matrix=None):
    rows = df[(df.layer == layer) & ((df.matrix == matrix) if matrix else True)]
    assert len(rows) == 1, (layer, matrix, rows)
    return rows.iloc[0]


def test_every_module_and_loose_parameter_is_listed_with_a_reason_when_not_analysed():
    model = Mixed().eval()
    df = analyze(model, input_shape=(1, 6, 6))
    leaves = {n for n, m in model.named_modules() if n and not list(m.children())}
    assert leaves | {"token", "attn"} <= set(df.layer)
    skipped = df[~df.analysed]
    assert (skipped.reason.str.len() > 10).all()
    assert "normalisation" in _row(df, "bn").reason
    assert "no weights" in _row(df, "act").reason
    assert "analysed per head" in _row(df, "attn.out_proj").reason
    assert "not a weight matrix" in _row(df, "token").reason
    # two heads, four projections each
    heads = df[(df.layer == "attn") & df.analysed]
    assert len(heads) == 8 and heads.matrix.iloc[0] == "head 0 Q projection"
    q1 = _row(df, "attn", "head 1 Q projection")
    W = model.attn.in_proj_weight.detach().double().numpy()[4:8]
    S = np.linalg.svd(W, compute_uv=False)
    assert q1["shape"] == "4 x 8" and q1["rank"] == 4 and q1["null_dim"] == 4
    assert q1["condition_number"] == pytest.approx(S[0] / S[-1], rel=1e-9)
    o0 = _row(df, "attn", "head 0 output projection")
    Wo = model.attn.out_proj.weight.detach().double().numpy()[:, :4]
    assert o0["shape"] == "8 x 4" and o0["left_null_dim"] == 4
    assert o0["sigma_max"] == pytest.approx(np.linalg.norm(Wo, 2), rel=1e-9)
    emb = _row(df, "embed")
    assert emb["shape"] == "5 x 7" and emb["rank"] == 5 and emb["null_dim"] == 2


def test_conv_rows_are_the_operator_on_the_input_the_layer_sees():
    model = Mixed().eval()
    row = _row(analyze(model, input_shape=(1, 6, 6)), "conv")

    def conv_no_bias(x):  # a separate dense computation: the Jacobian of the map
        return nn.functional.conv2d(x, model.conv.weight.double(), None, 2, 1)

    J = torch.autograd.functional.jacobian(conv_no_bias, torch.zeros(1, 1, 6, 6).double())
    S = np.linalg.svd(J.reshape(4 * 3 * 3, 36).numpy(), compute_uv=False)
    assert row["matrix"] == "convolution operator on 1 x 6 x 6" and row["shape"] == "36 x 36"
    assert row["condition_number"] == pytest.approx(S[0] / S[S > 1e-6][-1], rel=1e-6)
    assert row["rank"] == int(np.sum(S > S[0] * 36 * 2.0**-23))
    kernels = model.conv.weight.detach().double().reshape(4, 9).numpy()
    Sk = np.linalg.svd(kernels, compute_uv=False)
    assert row["kernel_condition_number"] == pytest.approx(Sk[0] / Sk[-1], rel=1e-9)
    # without a size the operator is unknown, and the table says how to give one
    bare = _row(analyze(model), "conv")
    assert not bare["analysed"] and "input_shape" in bare["reason"]
    assert bare["kernel_condition_number"] == pytest.approx(Sk[0] / Sk[-1], rel=1e-9)


def test_input_energy_is_the_fraction_of_the_real_inputs_in_the_row_space():
    model = Mixed().train()
    x = torch.rand(20, 1, 6, 6)
    df = analyze(model, x)  # the hooked pass runs in eval mode; the caller's mode comes back
    assert model.training and all(p.requires_grad for p in model.parameters())
    model.eval()
    with frozen(model), torch.no_grad():  # the same kernels as analyze's hooked pass
        feats = model.features(x).double().numpy()  # what the head sees
    _, S, Vh = np.linalg.svd(model.head.weight.detach().double().numpy())
    kept = np.sum((feats @ Vh[:3].T) ** 2) / np.sum(feats**2)
    assert 0.01 < kept < 0.95
    assert _row(df, "head")["input_energy_in_row_space"] == pytest.approx(kept, rel=1e-9)
    assert _row(df, "proj")["input_energy_in_row_space"] == 1.0  # 4 -> 8: sees everything
    assert analyze(model, input_shape=(1, 6, 6))["input_energy_in_row_space"].isna().all()


def test_the_one_layer_fcnn_has_a_774_dimensional_null_space():
    df = analyze(build_model("fcnn1"))  # its registered input shape
    row = df[df.analysed].iloc[0]
    assert (row["shape"], row["rank"], row["null_dim"], row["left_null_dim"]) == (
        "10 x 784",
        10,
        774,
        0,
    )
    assert not df[~df.analysed].empty and "no weights" in df[~df.analysed].reason.iloc[0]


def test_a_vision_transformer_lists_every_head():
    from torchvision.models import VisionTransformer

    vit = VisionTransformer(
        28, 7, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64, num_classes=10
    )
    vit.conv_proj = nn.Conv2d(1, 32, 7, 7)
    df = analyze(vit, input_shape=(1, 28, 28))
    for layer in range(2):
        attn = df[
            (df.layer == f"encoder.layers.encoder_layer_{layer}.self_attention") & df.analysed
        ]
        assert len(attn) == 16
    patches = _row(df, "conv_proj")  # 16 patches of 49 pixels -> 32 values each
    assert patches["shape"] == "512 x 784" and patches["null_dim"] == 784 - 512
    assert {"class_token", "encoder.pos_embedding"} <= set(df[df.type == "parameter"].layer)


def test_the_registered_vit_lists_all_16_heads_and_every_other_weight():
    from nnspaces.data import load_dataset

    model = build_model("vit")
    data = load_dataset("mnist-embedded", n_train=10, n_test=20)
    df = analyze(model, data)
    attn = df[df.type == "MultiheadAttention"]
    assert attn.analysed.all() and len(attn) == 4 * 4 * 4  # layers x heads x (Q, K, V, out)
    for layer in range(4):
        rows = attn[attn.layer == f"encoder.layers.encoder_layer_{layer}.self_attention"]
        labels = [f"head {h} {p} projection" for h in range(4) for p in ("Q", "K", "V", "output")]
        assert list(rows.matrix) == labels
        assert set(rows["shape"]) == {"16 x 64", "64 x 16"}
        # the Q, K, V rows see the real tokens (the input energy); the output rows say why not
        qkv = rows[~rows.matrix.str.contains("output")]
        assert qkv.input_energy_in_row_space.between(0, 1).all()
        assert rows[rows.matrix.str.contains("output")].reason.str.contains("not a module").all()
    patches = _row(df, "conv_proj")  # 16 patches of 49 pixels -> 64 values each
    assert patches.analysed and patches["shape"] == "1024 x 784" and patches["rank"] == 784
    mlps = df[df.layer.str.contains(r"\.mlp\.") & df.analysed]
    assert len(mlps) == 8 and set(mlps["shape"]) == {"128 x 64", "64 x 128"}
    assert _row(df, "heads.head")["shape"] == "10 x 64"
    assert df.analysed.sum() == 64 + 1 + 8 + 1
    # nothing skipped silently: every module and loose parameter has a row, with a reason
    leaves = {n for n, m in model.named_modules() if n and not list(m.children())}
    assert leaves <= set(df.layer)
    assert {"class_token", "encoder.pos_embedding"} <= set(df[df.type == "parameter"].layer)
    skipped = df[~df.analysed]
    assert (skipped.reason.str.len() > 10).all()
    assert sorted(skipped.type.unique()) == [
        "Dropout",
        "GELU",
        "LayerNorm",
        "NonDynamicallyQuantizableLinear",
        "parameter",
    ]
    for name, _ in model.named_parameters():  # each in its module's row(s), or its own
        assert name in set(df.layer) or name.rsplit(".", 1)[0] in set(df.layer), name
    # the same heads as a table by layer, head and projection, and as matrices
    heads = attention_heads(df)
    assert len(heads) == 64 and list(heads.projection[:4]) == list(PROJECTIONS)
    assert (heads.groupby(["layer", "head"]).size() == 4).all()
    assert (heads.groupby("layer")["head"].nunique() == 4).all()
    attn = model.encoder.layers[2].self_attention
    mats = head_matrices(attn)
    assert len(mats) == 16
    w = attn.in_proj_weight.detach().double().numpy()
    np.testing.assert_array_equal(mats[1, "K"], w[64 + 16 : 64 + 32])
    np.testing.assert_array_equal(mats[3, "output"], attn.out_proj.weight.detach().numpy()[:, 48:])
    row = heads[
        (heads.layer == "encoder.layers.encoder_layer_2.self_attention") & (heads["head"] == 1)
    ]
    S = np.linalg.svd(mats[1, "K"], compute_uv=False)
    assert row[row.projection == "K"].sigma_max.item() == pytest.approx(S[0])
    assert row[row.projection == "K"].condition_number.item() == pytest.approx(S[0] / S[-1])


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="needs a torch nn.Module, got str"):
        analyze("resnet18")
    with pytest.raises(TypeError, match="Dataset or a tensor of images, got list"):
        analyze(Mixed(), [1, 2])


def test_layernorm_reach_separates_reachable_from_unreachable_logits():
    """Logits the module itself produces are below 1 (reachable); the same logits scaled far
    beyond what a normalised vector can give are above it."""
    from nnspaces.spaces.analysis import layernorm_reach

    torch.manual_seed(0)
    norm, head = nn.LayerNorm(16).double(), nn.Linear(16, 5).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
        norm.bias.normal_()
    logits = head(norm(torch.randn(8, 16, dtype=torch.float64))).detach()
    inside = layernorm_reach(norm, head, logits)
    assert inside.shape == (8,) and (inside < 1).all() and (inside > 0).all()
    offset = head(norm.bias).detach()  # the logits of n = 0
    far = offset + 50 * (logits - offset)
    assert (layernorm_reach(norm, head, far) > 1).all()
    # the ratio is linear in the distance from the logits of n = 0
    np.testing.assert_allclose(layernorm_reach(norm, head, far), 50 * inside, rtol=1e-8)
