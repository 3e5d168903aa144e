"""Image priors (nnspaces.inversion.priors): the registry, weight checks, and every penalty
against values computed by hand."""

import math

import pytest
import torch
from torch import nn

from nnspaces.inversion.priors import (
    PRIORS,
    BatchNormStats,
    PriorTerms,
    check_priors,
    total_variation,
)


def plain_model():
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 2))


def bn_model():
    """conv (identity kernel) -> BatchNorm2d with known running statistics -> pooled head."""
    conv = nn.Conv2d(1, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, 2.0]).view(2, 1, 1, 1))
    bn = nn.BatchNorm2d(2)
    bn.running_mean.copy_(torch.tensor([1.0, 0.0]))
    bn.running_var.copy_(torch.tensor([2.0, 1.0]))
    return nn.Sequential(conv, bn, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2)).eval()


def test_registry():
    assert tuple(PRIORS) == ("tv", "l2-avg", "bn")
    assert [p.needs_averages for p in PRIORS.values()] == [False, True, False]
    assert PRIORS["bn"].applies_to(bn_model()) and not PRIORS["bn"].applies_to(plain_model())
    assert PRIORS["tv"].applies_to(plain_model()) and PRIORS["l2-avg"].applies_to(plain_model())


def test_check_priors_normalises():
    assert check_priors(None) == {}
    assert check_priors({}) == {}
    out = check_priors({"tv": 1, "l2-avg": 0.0})  # zero weights are dropped
    assert out == {"tv": 1.0} and type(out["tv"]) is float
    assert check_priors({"bn": 0.5}, bn_model()) == {"bn": 0.5}
    assert check_priors({"bn": 0.0}) == {}


def test_check_priors_takes_one_weight_per_row():
    out = check_priors({"tv": [0, 0.5, 2], "l2-avg": (0.0, 0.0, 0.0), "bn": 0}, rows=3)
    assert out == {"tv": (0.0, 0.5, 2.0)}  # a prior weighted nowhere is dropped
    with pytest.raises(ValueError, match="prior 'tv' has 2 weights for a batch of 3 images"):
        check_priors({"tv": [0.1, 0.2]}, rows=3)
    with pytest.raises(ValueError, match="prior 'tv' weight -1 must be finite and >= 0"):
        check_priors({"tv": [0.1, -1, 0.2]}, rows=3)
    with pytest.raises(ValueError, match="must be a number"):  # rows not given: one weight
        check_priors({"tv": [0.1, 0.2]})


def test_prior_terms_with_a_weight_per_row():
    x = torch.zeros(3, 1, 2, 2)
    x[1, 0] = torch.tensor([[0.0, 1.0], [3.0, 5.0]])  # tv 2.5
    x[2, 0] = torch.tensor([[1.0, 1.0], [1.0, 2.0]])  # tv 0.5
    base = torch.tensor([0.5, 0.25, 1.0])
    terms = PriorTerms(plain_model(), {"tv": (0.0, 0.1, 4.0)}, None)
    assert terms.free.tolist() == [True, False, False]
    with terms:
        assert torch.allclose(terms.add(base, x, slice(None)), torch.tensor([0.5, 0.5, 3.0]))
        # the rows still in the batch get their own weights
        rows = torch.tensor([0, 2])
        assert torch.allclose(terms.add(base[rows], x[rows], rows), torch.tensor([0.5, 3.0]))


@pytest.mark.parametrize(
    ("priors", "message"),
    [
        ({"blur": 1.0}, "unknown prior 'blur'; allowed: tv, l2-avg, bn"),
        ({"tv": -0.1}, "prior 'tv' weight -0.1 must be finite and >= 0"),
        ({"tv": math.nan}, "prior 'tv' weight nan must be finite"),
        ({"tv": math.inf}, "prior 'tv' weight inf must be finite"),
        ({"tv": True}, "prior 'tv' weight True must be a number"),
        ({"tv": "1"}, "prior 'tv' weight '1' must be a number"),
        (["tv"], "priors must be a dict {name: weight}"),
        ({"bn": 1.0}, "prior 'bn' (BatchNorm statistics of real images) does not apply to "),
    ],
)
def test_check_priors_rejects_bad_input(priors, message):
    with pytest.raises(ValueError) as e:
        check_priors(priors, plain_model())
    assert message in str(e.value)


def test_bn_refusal_names_the_model():
    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

    with pytest.raises(ValueError, match="does not apply to Classifier: it has no BatchNorm2d"):
        check_priors({"bn": 1.0}, Classifier())


def test_total_variation_hand_values():
    x = torch.zeros(2, 1, 2, 2)
    x[0, 0] = torch.tensor([[0.0, 1.0], [3.0, 5.0]])
    x[1, 0] = 7.0
    # image 0: vertical |3-0| + |5-1| = 7, horizontal |1-0| + |5-3| = 3 -> 10 / 4 pixels
    assert torch.allclose(total_variation(x), torch.tensor([2.5, 0.0]))
    # channels are not mixed: two channels of opposite ramps each count, 8 pixel values
    y = torch.zeros(1, 2, 2, 2)
    y[0, 0] = torch.tensor([[0.0, 1.0], [0.0, 1.0]])  # horizontal 1 + 1
    y[0, 1] = torch.tensor([[1.0, 1.0], [0.0, 0.0]])  # vertical 1 + 1
    assert torch.allclose(total_variation(y), torch.tensor([4 / 8]))
    # flat vectors (C, n): mean absolute difference of neighbours
    v = torch.tensor([[0.0, 2.0, -1.0, -1.0]])
    assert torch.allclose(total_variation(v), torch.tensor([(2 + 3 + 0) / 4]))


def test_batchnorm_statistics_hand_values():
    model = bn_model()
    x = torch.tensor([[[[0.0, 2.0], [4.0, 6.0]]]])  # mean 3, biased variance 5
    with BatchNormStats(model) as stats:
        model(x)
        term = stats.pop()
    # channel 0 sees x: mean 3, var 5; channel 1 sees 2x: mean 6, var 20
    # ||(3, 6) - (1, 0)|| + ||(5, 20) - (2, 1)|| = sqrt(4 + 36) + sqrt(9 + 361)
    expected = math.sqrt(40) + math.sqrt(370)
    assert torch.allclose(term, torch.tensor([expected]))
    # hooks are gone after the context: nothing more is recorded
    assert not model[1]._forward_hooks
    with pytest.raises(ValueError, match="prior 'bn' needs BatchNorm2d layers"):
        BatchNormStats(plain_model())


def test_batchnorm_statistics_through_a_folded_copy():
    from nnspaces.inversion.specialise import specialise

    model = bn_model()
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([0.5, -2.0]))
        model[1].bias.copy_(torch.tensor([0.3, -1.0]))
    fast = specialise(model, (1, 2, 2))
    assert fast.folded == ["1"] and list(fast.bn_of) == ["0"]
    x = torch.tensor([[[[0.0, 2.0], [4.0, 6.0]]], [[[1.0, -1.0], [0.5, 3.0]]]])
    with BatchNormStats(model) as plain, BatchNormStats(fast.model, fast.bn_of) as folded:
        model(x)
        fast.model(x)
        assert torch.allclose(folded.pop(), plain.pop(), rtol=1e-5)
    with torch.no_grad():
        model[1].weight[1] = 0.0  # this channel's input cannot be read back
    with pytest.raises(ValueError, match="0: the BatchNorm folded into it has a zero scale"):
        BatchNormStats(fast.model, {"0": model[1]})


def test_batchnorm_skips_one_pixel_inputs():
    model = bn_model()
    with BatchNormStats(model) as stats:
        model(torch.ones(1, 1, 1, 1))
        assert stats.terms == []


def test_prior_terms_add_weighted_penalties():
    x = torch.zeros(2, 1, 2, 2)
    x[0, 0] = torch.tensor([[0.0, 1.0], [3.0, 5.0]])  # tv 2.5
    avg = torch.ones(2, 1, 2, 2)
    # mean squared distance to the average: image 0 (1 + 0 + 4 + 16) / 4, image 1 1
    base = torch.tensor([0.5, 0.25])
    terms = PriorTerms(plain_model(), {"tv": 0.1, "l2-avg": 2.0}, avg)
    with terms:
        total = terms.add(base, x, slice(None))
    expected = base + 0.1 * torch.tensor([2.5, 0.0]) + 2.0 * torch.tensor([21 / 4, 1.0])
    assert torch.allclose(total, expected)
    # no weights: the base comes back unchanged
    with PriorTerms(plain_model(), {}, None) as none:
        assert torch.equal(none.add(base, x, slice(None)), base)
        assert bool(none.free)  # no weight anywhere: every row may stop on its own
    with pytest.raises(ValueError, match="prior 'l2-avg' needs the class averages"):
        PriorTerms(plain_model(), {"l2-avg": 1.0}, None)


def test_prior_terms_bn_hooks_only_while_entered():
    model = bn_model()
    terms = PriorTerms(model, {"bn": 3.0}, None)
    assert not model[1]._forward_hooks
    x = torch.tensor([[[[0.0, 2.0], [4.0, 6.0]]]])
    with terms:
        assert model[1]._forward_hooks
        model(x)
        total = terms.add(torch.zeros(1), x, slice(None))
    assert torch.allclose(total, torch.tensor([3.0 * (math.sqrt(40) + math.sqrt(370))]))
    assert not model[1]._forward_hooks
