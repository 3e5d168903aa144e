"""The specialised copy (BatchNorm folded, kernels trimmed) computes the same function."""

import pytest
import torch
from torch import nn

from nnspaces.inversion import specialise as sp
from nnspaces.models import build_model


def _resnet_with_statistics():
    """ResNet18 with BatchNorm statistics and affine parameters far from their defaults (at
    the defaults a wrong fold, e.g. a missing mean or a square root, would go unnoticed)."""
    model = build_model("resnet18")
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) * 3 + 0.2)
            with torch.no_grad():
                m.weight.copy_(torch.randn(n, generator=g))
                m.bias.copy_(torch.randn(n, generator=g))
    return model.eval()


@pytest.fixture(scope="module")
def resnet():
    model = _resnet_with_statistics()
    return model, sp.specialise(model, (1, 28, 28))


def test_trim_ranges_by_hand():
    # 3 taps, padding 1: a 1-pixel input meets only the centre
    assert sp._trim_range(3, 1, 1, 1) == (1, 1)
    # stride 2 on a 2-pixel input: one output, at -1, 0, 1 -> taps 1 and 2
    assert sp._trim_range(3, 2, 1, 2) == (1, 2)
    # a 7-pixel input uses every tap
    assert sp._trim_range(3, 1, 1, 7) == (0, 2)
    assert sp._trim_range(7, 2, 3, 28) == (0, 6)


def test_resnet18_outputs_and_input_gradients_agree(resnet):
    model, s = resnet
    x = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    a, b = model(xa), s.model(xb)
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-5 * a.abs().max().item())
    w = torch.randn(a.shape, generator=torch.Generator().manual_seed(3))
    (ga,) = torch.autograd.grad((a * w).sum(), xa)
    (gb,) = torch.autograd.grad((b * w).sum(), xb)
    assert torch.allclose(ga, gb, rtol=1e-4, atol=1e-5 * ga.abs().max().item())


def test_resnet18_rewrites_what_the_28x28_digit_allows(resnet):
    model, s = resnet
    assert len(s.folded) == 20  # every BatchNorm follows a convolution
    assert not any(isinstance(m, nn.BatchNorm2d) for m in s.model.modules())
    # layer4 sees 2x2 (its first conv) and 1x1 maps; layer3 sees 4x4 and 2x2: all taps used
    assert s.trimmed == {
        "layer4.0.conv1": ((3, 3), (2, 2)),
        "layer4.0.conv2": ((3, 3), (1, 1)),
        "layer4.1.conv1": ((3, 3), (1, 1)),
        "layer4.1.conv2": ((3, 3), (1, 1)),
    }
    assert s.model.get_submodule("layer4.1.conv1").padding == (0, 0)
    assert not s.reason
    assert "20 BatchNorm layers folded, 4 kernels trimmed" in s.summary()
    # the original is untouched
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 20
    assert model.layer4[1].conv1.kernel_size == (3, 3)
    assert all(not p.requires_grad for p in s.model.parameters())


def test_larger_input_keeps_full_kernels():
    model = _resnet_with_statistics()
    s = sp.specialise(model, (1, 64, 64))  # layer4 sees 2x2: every tap of stride 1 is used
    assert "layer4.1.conv1" not in s.trimmed
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), s.model(x), rtol=1e-5, atol=1e-4)


class Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: torch.fx refuses it
            return self.lin(x)
        return -self.lin(x)


def test_batchnorm_without_affine_parameters_folds_too():
    from nnspaces.inversion import invert

    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4, affine=False),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 5 * 5, 3),
    ).eval()
    model[1].running_mean.uniform_(-1, 1)
    model[1].running_var.uniform_(0.5, 2)
    fast = sp.specialise(model, (1, 5, 5))
    assert fast.folded == ["1"]
    x = torch.rand(6, 1, 5, 5)
    with torch.no_grad():
        assert torch.allclose(fast.model(x), model(x), atol=1e-6)
    kw = dict(method="descent", start=x[:3], priors={"bn": 0.5}, steps=15, progress=False)
    t = torch.randn(3, 3)
    a, b = invert(model, t, **kw), invert(model, t, specialise=False, **kw)
    assert a.settings["specialised"].startswith("1 BatchNorm layers folded")
    assert torch.allclose(a.image, b.image, atol=1e-5)


def test_untraceable_model_is_used_as_it_is_and_says_why():
    model = Untraceable()
    s = sp.specialise(model, (4,))
    assert "torch.fx cannot trace it" in s.reason
    assert s.summary().startswith("used as it is")
    assert s.model is model


def test_nothing_to_rewrite_keeps_the_model_and_does_not_pin_it_in_the_cache():
    import gc
    import weakref

    model = build_model("fcnn1")
    s = sp.specialise(model, (1, 28, 28))
    assert s.model is model and s.reason == "nothing to fold or trim"
    cached = sp.specialised(model, (1, 28, 28))
    assert cached.model is model and cached.reason == s.reason
    ref = weakref.ref(model)
    del model, s, cached
    gc.collect()
    assert ref() is None


def test_a_wrong_rewrite_is_refused(monkeypatch):
    real = sp._rewrite_conv

    def off_by_bias(conv, bn, in_hw):
        out, trim = real(conv, bn, in_hw)
        with torch.no_grad():
            out.bias.add_(0.05)
        return out, trim

    monkeypatch.setattr(sp, "_rewrite_conv", off_by_bias)
    with pytest.raises(RuntimeError, match="differs from the model"):
        sp.specialise(_resnet_with_statistics(), (1, 28, 28))


def test_cache_follows_the_weights():
    model = _resnet_with_statistics()
    a = sp.specialised(model, (1, 28, 28))
    assert sp.specialised(model, (1, 28, 28)) is a
    with torch.no_grad():
        next(model.parameters()).mul_(2)
    b = sp.specialised(model, (1, 28, 28))
    assert b is not a
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        want = model(x)
        assert torch.allclose(b.model(x), want, rtol=1e-5, atol=1e-5 * want.abs().max().item())
    assert sp.specialised(model, (1, 14, 56)) is not b  # the shape is part of the key


def test_invert_runs_the_specialised_copy_with_the_batchnorm_prior_too():
    from nnspaces.inversion import invert

    model = _resnet_with_statistics()
    x0 = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(4))
    t = torch.randn(2, 10, generator=torch.Generator().manual_seed(5))
    common = dict(method="descent", start=x0, classes=[0, 1], steps=3, progress=False)
    r = invert(model, t, **common)
    assert r.settings["specialised"].startswith("20 BatchNorm layers folded")
    assert "specialised" not in invert(model, t, specialise=False, **common).settings
    # the bn prior reads each folded BatchNorm's input statistics from its convolution's
    # output: the same images as on the network as it is, where it hooks the BatchNorm layers
    bn = dict(common, priors={"bn": 0.5}, lr=0.05, steps=20)
    fast, plain = invert(model, t, **bn), invert(model, t, specialise=False, **bn)
    assert fast.settings["specialised"].startswith("20 BatchNorm layers folded")
    assert torch.allclose(fast.image, plain.image, atol=1e-4)
    no_prior = invert(model, t, **dict(bn, priors=None))
    assert (fast.image - no_prior.image).abs().max() > 1e-2  # the prior moved the images
    # a BatchNorm with a zero scale cannot be undone: the network runs as it is
    with torch.no_grad():
        model.layer1[0].bn1.weight[3] = 0.0
    assert "specialised" not in invert(model, t, **bn).settings
