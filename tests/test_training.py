"""Training beats chance; the checkpoint cache hits, and retrains on corrupt files."""

import pytest
import torch

from nnspaces.data import load_dataset
from nnspaces.training import TrainConfig, cache_key, evaluate, get_trained


@pytest.fixture(scope="module")
def small():
    return load_dataset("mnist-embedded", n_train=500, n_test=200)


def test_short_training_beats_chance(small, tmp_path):
    net = get_trained(TrainConfig("fcnn1", epochs=2), small, cache_dir=tmp_path, progress=False)
    assert not net.from_cache
    assert net.test_accuracy > 0.5  # chance is 0.1
    assert net.test_accuracy == pytest.approx(evaluate(net.model, small.x_test, small.y_test))


def test_training_is_deterministic(small, tmp_path):
    a = get_trained(TrainConfig("fcnn5", epochs=1), small, cache_dir=tmp_path / "a", progress=False)
    b = get_trained(TrainConfig("fcnn5", epochs=1), small, cache_dir=tmp_path / "b", progress=False)
    assert all(
        torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True)
    )


def test_cache_hit_and_key(small, tmp_path):
    cfg = TrainConfig("fcnn1", epochs=1)
    first = get_trained(cfg, small, cache_dir=tmp_path, progress=False)
    second = get_trained(cfg, small, cache_dir=tmp_path, progress=False)
    assert second.from_cache and second.checkpoint == first.checkpoint
    assert second.test_accuracy == first.test_accuracy
    assert torch.equal(first.model[1].weight, second.model[1].weight)
    # any change of configuration or data is another key
    assert cache_key(TrainConfig("fcnn1", epochs=2), small) != cache_key(cfg, small)
    assert cache_key(TrainConfig("fcnn1", epochs=1, seed=1), small) != cache_key(cfg, small)
    other = load_dataset("mnist-embedded", n_train=400, n_test=200)
    assert cache_key(cfg, other) != cache_key(cfg, small)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong-key"])
def test_corrupt_checkpoint_is_retrained(small, tmp_path, damage):
    cfg = TrainConfig("fcnn1", epochs=1)
    first = get_trained(cfg, small, cache_dir=tmp_path, progress=False)
    path = first.checkpoint
    if damage == "garbage":
        path.write_bytes(b"not a checkpoint")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    else:
        ckpt = torch.load(path, weights_only=True)
        ckpt["key"] = "something else"
        torch.save(ckpt, path)
    with pytest.warns(UserWarning, match="unusable"):
        again = get_trained(cfg, small, cache_dir=tmp_path, progress=False)
    assert not again.from_cache
    assert torch.equal(again.model[1].weight, first.model[1].weight)  # deterministic retrain
    # and the rewritten file is good again
    assert get_trained(cfg, small, cache_dir=tmp_path, progress=False).from_cache


def test_bad_config():
    with pytest.raises(ValueError, match="epochs=0"):
        TrainConfig("fcnn1", epochs=0)
    with pytest.raises(ValueError, match="unknown network 'mlp'"):
        TrainConfig("mlp")
    with pytest.raises(ValueError, match="momentum=1.5"):
        TrainConfig("fcnn1", momentum=1.5)
