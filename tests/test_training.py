"""Training beats chance with the paper's recipe; a network's own recipe (vit: AdamW, one-cycle)
is what trains it; the checkpoint cache hits, is keyed by everything that determines a network
(and keeps the keys of configurations made before the recipes), retrains on corrupt files, and
writes atomically."""

import dataclasses
import hashlib
import json

import pytest
import torch
from helpers import mode, umask

from nnspaces import paper, training
from nnspaces.data import load_dataset
from nnspaces.models import network_spec
from nnspaces.training import (
    ADDED_FIELDS,
    ONE_CYCLE,
    TrainConfig,
    cache_key,
    evaluate,
    get_trained,
    make_optimizer,
    predict,
    save_checkpoint,
)


@pytest.fixture(scope="module")
def small():
    return load_dataset("mnist-embedded", n_train=500, n_test=200)


def test_defaults_are_the_papers_recipe():
    cfg = TrainConfig("fcnn1")
    # Section 2: SGD, learning rate 1e-3, momentum 0.9, batch size 32, 20 epochs
    assert (cfg.lr, cfg.momentum, cfg.batch_size, cfg.epochs, cfg.seed) == (
        1e-3,
        0.9,
        32,
        20,
        0,
    )
    assert {k: getattr(cfg, k) for k in paper.TRAINING} == paper.TRAINING


def test_short_training_beats_chance(small, tmp_path):
    net = get_trained(TrainConfig("fcnn1", epochs=2), small, cache_dir=tmp_path, progress=False)
    assert not net.from_cache
    assert not net.model.training
    assert net.test_accuracy > 0.5  # chance is 0.1
    assert net.test_accuracy == pytest.approx(evaluate(net.model, small.x_test, small.y_test))
    # evaluate is the share of images whose largest output is the label
    out = net.model(small.x_test).detach()
    assert net.test_accuracy == pytest.approx((out.argmax(1) == small.y_test).float().mean().item())
    torch.testing.assert_close(predict(net.model, small.x_test, batch_size=7), out)
    assert "fcnn1" in repr(net) and "trained" in repr(net)


def test_evaluate_on_nothing():
    from nnspaces.models import build_model

    model = build_model("fcnn1")
    with pytest.raises(ValueError, match="empty split"):
        evaluate(model, torch.zeros(0, 1, 28, 28), torch.zeros(0, dtype=torch.long))
    assert predict(model, torch.zeros(0, 1, 28, 28)).shape == (0, 10)


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
    assert not second.model.training
    assert first.checkpoint.name == f"fcnn1-{cache_key(cfg, small)}.pt"
    # the key is a function of the configuration and the data, nothing else
    assert cache_key(TrainConfig("fcnn1", epochs=1), small) == cache_key(cfg, small)
    same_data = dataclasses.replace(small, x_train=small.x_train.clone())  # equal, not the same
    assert cache_key(cfg, same_data) == cache_key(cfg, small)


# one different value for every field of TrainConfig
CHANGES = {
    "network": "fcnn5",
    "epochs": 2,
    "lr": 2e-3,
    "momentum": 0.5,
    "batch_size": 64,
    "seed": 1,
    "optimizer": "adamw",
    "weight_decay": 0.01,
    "schedule": "one-cycle",
}


def test_every_field_is_part_of_the_key(small):
    assert set(CHANGES) == {f.name for f in dataclasses.fields(TrainConfig)}
    base = TrainConfig("fcnn1", epochs=1)
    keys = {cache_key(base, small)}
    for name, value in CHANGES.items():
        keys.add(cache_key(dataclasses.replace(base, **{name: value}), small))
    assert len(keys) == len(CHANGES) + 1


def _key_before_recipes(config, data):
    """cache_key as it was before TrainConfig had optimizer, weight_decay and schedule."""
    old = ("network", "epochs", "lr", "momentum", "batch_size", "seed")
    blob = json.dumps(
        {
            "config": {k: getattr(config, k) for k in old},
            "data": data.info() | {"fingerprint": data.fingerprint()},
            "format": training.CACHE_FORMAT,
            "torch": torch.__version__.split("+")[0],
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


@pytest.mark.parametrize("network", ["fcnn1", "fcnn5", "resnet18"])
def test_the_papers_networks_keep_their_cached_keys(small, network):
    # the checkpoints cached before the recipes existed are found again: same key
    for cfg in (
        TrainConfig(network),
        TrainConfig(network, epochs=3, seed=2, lr=0.01),
        TrainConfig.for_network(network, epochs=10),
    ):
        assert cache_key(cfg, small) == _key_before_recipes(cfg, small)
    # an added field at its old value is left out, whatever the number type
    assert cache_key(TrainConfig(network, weight_decay=0), small) == cache_key(
        TrainConfig(network), small
    )
    # the added fields' old values are their defaults (the paper's recipe)
    defaults = TrainConfig(network)
    assert ADDED_FIELDS == {k: getattr(defaults, k) for k in ADDED_FIELDS}


def test_a_recipe_changes_the_key(small):
    vit = TrainConfig.for_network("vit", epochs=1)
    assert cache_key(vit, small) != _key_before_recipes(vit, small)
    # every added field, away from its old value, changes the key on its own
    base = TrainConfig("fcnn1", epochs=1)
    for name, value in {
        "optimizer": "adamw",
        "weight_decay": 1e-4,
        "schedule": "one-cycle",
    }.items():
        assert cache_key(dataclasses.replace(base, **{name: value}), small) != cache_key(
            base, small
        )
    # and back to the old value on a recipe that differs elsewhere too
    for name, old in ADDED_FIELDS.items():
        assert cache_key(dataclasses.replace(vit, **{name: old}), small) != cache_key(vit, small)


def test_for_network_applies_the_networks_recipe():
    for name in ("fcnn1", "fcnn5", "resnet18"):
        assert TrainConfig.for_network(name, epochs=3, seed=1) == TrainConfig(
            name, epochs=3, seed=1
        )
    vit = TrainConfig.for_network("vit", epochs=2)
    assert {k: getattr(vit, k) for k in network_spec("vit").training} == dict(
        network_spec("vit").training
    )
    assert (vit.optimizer, vit.schedule, vit.epochs) == ("adamw", "one-cycle", 2)
    # given values win over the recipe
    assert TrainConfig.for_network("vit", lr=1e-4).lr == 1e-4
    with pytest.raises(ValueError, match=r"unknown training values \['lerning_rate'\].*lr"):
        TrainConfig.for_network("vit", lerning_rate=1)
    with pytest.raises(ValueError, match="unknown network 'vgg'"):
        TrainConfig.for_network("vgg")


def test_make_optimizer_follows_the_config():
    from nnspaces.models import build_model

    model = build_model("fcnn1")
    opt, sched = make_optimizer(model, TrainConfig("fcnn1", weight_decay=0.1), 5)
    assert type(opt) is torch.optim.SGD and sched is None
    assert (opt.defaults["lr"], opt.defaults["momentum"], opt.defaults["weight_decay"]) == (
        1e-3,
        0.9,
        0.1,
    )
    cfg = TrainConfig("fcnn1", epochs=3, optimizer="adamw", schedule="one-cycle", momentum=0.8)
    opt, sched = make_optimizer(model, cfg, 5)
    assert type(opt) is torch.optim.AdamW and opt.defaults["betas"] == (0.8, 0.999)
    assert isinstance(sched, torch.optim.lr_scheduler.OneCycleLR)
    assert sched.total_steps == 15


def test_vit_trains_with_adamw_and_the_one_cycle_schedule(small, tmp_path, monkeypatch):
    made = []

    def spy(model, config, steps_per_epoch):
        made.append(make_optimizer(model, config, steps_per_epoch))
        return made[-1]

    monkeypatch.setattr(training, "make_optimizer", spy)
    cfg = TrainConfig.for_network("vit", epochs=2)
    tiny = dataclasses.replace(small, x_train=small.x_train[:128], y_train=small.y_train[:128])
    get_trained(cfg, tiny, cache_dir=tmp_path, progress=False)
    [(opt, sched)] = made
    assert type(opt) is torch.optim.AdamW
    group = opt.param_groups[0]
    assert group["weight_decay"] == cfg.weight_decay == network_spec("vit").training["weight_decay"]
    # the schedule ran to its end: two epochs of two batches of 64, the last batch with the
    # one-cycle's final learning rate, the peak over div_factor * final_div_factor
    assert sched.total_steps == 4 and sched.last_epoch == 3
    final = cfg.lr / (ONE_CYCLE["div_factor"] * ONE_CYCLE["final_div_factor"])
    assert group["lr"] == pytest.approx(final, rel=1e-6)


def test_the_data_is_part_of_the_key(small):
    cfg = TrainConfig("fcnn1", epochs=1)
    key = cache_key(cfg, small)
    fewer = dataclasses.replace(small, x_train=small.x_train[:400], y_train=small.y_train[:400])
    assert cache_key(cfg, fewer) != key
    # the same sizes, other images: the content counts, not the size
    other = dataclasses.replace(
        small,
        x_train=torch.cat([small.x_train[1:], small.x_test[:1]]),
        y_train=torch.cat([small.y_train[1:], small.y_test[:1]]),
    )
    assert (other.n_train, other.n_test) == (small.n_train, small.n_test)
    assert cache_key(cfg, other) != key
    # other test images
    x_test = small.x_test.flip(0)
    assert cache_key(cfg, dataclasses.replace(small, x_test=x_test)) != key
    # one pixel changed
    x = small.x_train.clone()
    x[0, 0, 0, 0] += 0.5
    assert cache_key(cfg, dataclasses.replace(small, x_train=x)) != key
    # the same images under another name
    assert cache_key(cfg, dataclasses.replace(small, name="mnist")) != key


def test_the_cache_format_is_part_of_the_key(small, monkeypatch):
    cfg = TrainConfig("fcnn1", epochs=1)
    key = cache_key(cfg, small)
    monkeypatch.setattr(training, "CACHE_FORMAT", training.CACHE_FORMAT + 1)
    assert cache_key(cfg, small) != key


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong-key", "wrong-shape"])
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
        if damage == "wrong-key":
            ckpt["key"] = "something else"
        else:
            ckpt["state_dict"]["1.weight"] = torch.zeros(3, 3)
        torch.save(ckpt, path)
    with pytest.warns(UserWarning, match="unusable"):
        again = get_trained(cfg, small, cache_dir=tmp_path, progress=False)
    assert not again.from_cache
    assert torch.equal(again.model[1].weight, first.model[1].weight)  # deterministic retrain
    # and the rewritten file is good again
    assert get_trained(cfg, small, cache_dir=tmp_path, progress=False).from_cache


@pytest.mark.parametrize("old", ["missing", "wrong-rows"])
def test_checkpoints_keep_the_training_outputs_and_old_ones_get_them(small, tmp_path, old):
    cfg = TrainConfig("fcnn1", epochs=1)
    first = get_trained(cfg, small, cache_dir=tmp_path, progress=False)
    expected = predict(first.model, small.x_train)  # the training images, not the test ones
    assert torch.equal(first.train_outputs, expected)
    path = first.checkpoint
    ckpt = torch.load(path, weights_only=True)
    assert torch.equal(ckpt["train_outputs"], expected)
    # a checkpoint that has them is read, not written again
    before = path.stat()
    assert torch.equal(get_trained(cfg, small, cache_dir=tmp_path).train_outputs, expected)
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    if old == "missing":  # a checkpoint saved before they were kept
        del ckpt["train_outputs"]
    else:
        ckpt["train_outputs"] = expected[:-1]
    torch.save(ckpt, path)
    again = get_trained(cfg, small, cache_dir=tmp_path, progress=False)
    assert again.from_cache  # the weights are kept: not retrained
    assert torch.equal(again.model[1].weight, first.model[1].weight)
    assert torch.equal(again.train_outputs, expected)
    rewritten = torch.load(path, weights_only=True)
    assert torch.equal(rewritten["train_outputs"], expected) and rewritten["key"] == ckpt["key"]
    assert torch.equal(rewritten["state_dict"]["1.weight"], ckpt["state_dict"]["1.weight"])


def test_default_cache_folder(small, tmp_path, monkeypatch):
    monkeypatch.setattr(training, "DEFAULT_CACHE", tmp_path / "cache")
    net = get_trained(TrainConfig("fcnn1", epochs=1), small, progress=False)
    assert net.checkpoint.parent == tmp_path / "cache" and net.checkpoint.is_file()


def test_checkpoints_are_readable_by_group_and_others(small, tmp_path):
    with umask(0o022):
        net = get_trained(TrainConfig("fcnn1", epochs=1), small, cache_dir=tmp_path, progress=False)
        saved = save_checkpoint({"w": torch.ones(2)}, tmp_path / "deep" / "m.pt")
    assert mode(net.checkpoint) == 0o644
    assert saved == tmp_path / "deep" / "m.pt" and mode(saved) == 0o644
    with umask(0o077):
        private = save_checkpoint({"w": torch.ones(2)}, tmp_path / "private.pt")
    assert mode(private) == 0o600
    ckpt = torch.load(net.checkpoint, weights_only=True)
    assert ckpt["key"] == net.checkpoint.stem.split("-", 1)[1]
    assert ckpt["config"] == dataclasses.asdict(net.config)
    assert ckpt["test_accuracy"] == net.test_accuracy


def test_save_checkpoint_round_trip_and_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / "m.pt"
    obj = {"state": {"w": torch.arange(4.0)}, "n": 3}
    save_checkpoint(obj, path)
    back = torch.load(path, weights_only=True)
    assert back["n"] == 3 and torch.equal(back["state"]["w"], torch.arange(4.0))
    with pytest.raises(Exception):  # noqa: B017  a lambda cannot be pickled
        save_checkpoint({"f": lambda: 0}, path)
    back = torch.load(path, weights_only=True)  # the old checkpoint, whole
    assert back["n"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_bad_config():
    with pytest.raises(ValueError, match="epochs=0"):
        TrainConfig("fcnn1", epochs=0)
    with pytest.raises(ValueError, match="unknown network 'mlp'"):
        TrainConfig("mlp")
    with pytest.raises(ValueError, match="momentum=1.5"):
        TrainConfig("fcnn1", momentum=1.5)
    with pytest.raises(ValueError, match="lr=0"):
        TrainConfig("fcnn1", lr=0)
    with pytest.raises(ValueError, match="batch_size=0"):
        TrainConfig("fcnn1", batch_size=0)
    with pytest.raises(ValueError, match="batch_size=2.5"):
        TrainConfig("fcnn1", batch_size=2.5)
    with pytest.raises(ValueError, match="unknown optimizer 'adam'; allowed: sgd, adamw"):
        TrainConfig("fcnn1", optimizer="adam")
    with pytest.raises(ValueError, match="unknown schedule 'cosine'; allowed: constant, one-cycle"):
        TrainConfig("fcnn1", schedule="cosine")
    with pytest.raises(ValueError, match="weight_decay=-0.1 must be a number >= 0"):
        TrainConfig("fcnn1", weight_decay=-0.1)
    with pytest.raises(ValueError, match="weight_decay=True"):
        TrainConfig("fcnn1", weight_decay=True)


def _from_cache_in_a_process(args) -> bool:
    cfg, data, cache_dir = args
    return get_trained(cfg, data, cache_dir=cache_dir, progress=False).from_cache


def test_two_processes_wanting_one_network_train_it_once(small, tmp_path):
    """Notebooks run side by side ask for the same uncached network at the same time: one
    trains it, the other waits for the checkpoint and loads it (without the lock both see no
    checkpoint and both train)."""
    import multiprocessing

    cfg = TrainConfig("fcnn5", epochs=3)
    with multiprocessing.get_context("spawn").Pool(2) as pool:  # fork after torch can hang
        jobs = pool.map_async(_from_cache_in_a_process, [(cfg, small, tmp_path)] * 2, chunksize=1)
        from_cache = jobs.get(timeout=300)
    assert sorted(from_cache) == [False, True]
    assert get_trained(cfg, small, cache_dir=tmp_path, progress=False).from_cache
