"""Datasets and training: real data, the MNIST-5k accuracy goal, determinism, checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from hwnas.errors import HwnasError, UnknownNameError
from hwnas.spaces import get_space, upgrade_state_dict
from hwnas.train import TrainConfig, TrainingDivergedError, load_dataset, train_arch
from hwnas.train.checkpoint import load_checkpoint, save_checkpoint


def test_datasets_are_real_and_split_without_overlap():
    mnist = load_dataset("mnist5k")
    assert mnist.input_shape == (1, 28, 28) and mnist.num_classes == 10
    assert len(mnist.x_train) + len(mnist.x_val) + len(mnist.x_test) == 5000
    assert len(mnist.x_test) == 1000
    assert set(mnist.y_test.tolist()) == set(range(10))
    digits = load_dataset("digits")
    assert digits.input_shape == (1, 8, 8)
    assert len(digits.x_train) + len(digits.x_val) + len(digits.x_test) == 1797
    # No test image appears in the training split.
    train = {tuple(r.tolist()) for r in digits.x_train.flatten(1)}
    assert not any(tuple(r.tolist()) in train for r in digits.x_test.flatten(1)[:50])
    resized = digits.fit_to((3, 32, 32))
    assert resized.x_train.shape[1:] == (3, 32, 32)
    assert torch.equal(resized.x_train[:, 0], resized.x_train[:, 1])


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(UnknownNameError, match="valid: digits, mnist5k"):
        load_dataset("cifar10")


@pytest.mark.slow  # ~70 s on 2 cores, the suite's longest: a quality goal, run with -m slow
def test_mobile_arch_reaches_95_percent_on_mnist5k_in_three_epochs():
    space = get_space("mobile:mnist")
    arch = space.parse("k3_e3-k3_e6-k3_e3-k5_e6-k3_e3-k5_e6-k3_e3")
    _, result = train_arch(arch, "mnist5k", TrainConfig(epochs=3, seed=0))
    assert result.test_accuracy >= 0.95
    assert result.val_accuracy >= 0.9


def test_same_seed_same_training_and_fidelity_changes_result():
    arch = get_space("mobile:mnist").sample(4)
    _, a = train_arch(arch, "digits", TrainConfig(epochs=1, seed=3))
    small = TrainConfig(epochs=1, seed=3, data_fraction=0.2)  # determinism on the cheap fidelity
    _, b = train_arch(arch, "digits", small)
    _, c = train_arch(arch, "digits", small)
    assert (b.val_accuracy, b.test_accuracy, b.train_loss) == (c.val_accuracy, c.test_accuracy, c.train_loss)
    assert c.train_loss != a.train_loss
    assert a.test_accuracy > 0.3  # well above the 0.1 chance level after a single epoch


def test_diverging_training_raises_a_clear_error():
    arch = get_space("mobile:mnist").sample(0)
    with pytest.raises(TrainingDivergedError, match="lower the learning rate"):
        train_arch(arch, "digits", TrainConfig(epochs=1, lr=1e6, momentum=0.0))


def test_bad_training_config_is_rejected():
    with pytest.raises(HwnasError, match="epochs >= 1"):
        TrainConfig(epochs=0)


def test_checkpoint_round_trip_reproduces_outputs(tmp_path):
    space = get_space("nb201")
    arch = space.sample(11)
    model = space.build(arch)
    with torch.no_grad():  # give BN non-trivial statistics
        model.train()(torch.randn(8, *space.input_shape))
    model.eval()
    path = save_checkpoint(tmp_path / "w.safetensors", arch, model, {"val_accuracy": 0.5})
    loaded_arch, loaded, meta = load_checkpoint(path)
    assert loaded_arch == arch and meta == {"val_accuracy": 0.5}
    x = torch.randn(2, *space.input_shape)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_checkpoint_rejects_missing_and_foreign_files(tmp_path):
    with pytest.raises(HwnasError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x80\x04not a safetensors file")
    with pytest.raises(HwnasError, match="not a valid safetensors"):
        load_checkpoint(bad)
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(HwnasError, match="not an hwnas checkpoint"):
        load_checkpoint(tmp_path / "foreign.safetensors")


# Saved by hwnas 9292ddd, whose MBConv was one nn.Sequential `body` (keys `l1.body.4.weight`): checkpoint
# schema 1, non-trivial BN statistics, and in its meta the eval-mode logits of a seeded input.
V1 = Path(__file__).parent / "data" / "mobile_v1.safetensors"


def _v1_probe() -> tuple[torch.Tensor, torch.Tensor]:
    with safe_open(str(V1), framework="pt") as f:
        header, keys = f.metadata(), list(f.keys())
    assert header["schema"] == "1" and any(".body." in k for k in keys)  # the old key layout
    meta = json.loads(header["meta"])
    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(meta["input_seed"]))
    assert float(x.sum()) == pytest.approx(meta["input_sum"])  # the input the logits were taken on
    return x, torch.tensor(meta["logits"])


def test_checkpoints_of_the_old_key_layout_load_export_and_morph_with_the_same_outputs(tmp_path):
    from hwnas.export.source import load_weights

    x, logits = _v1_probe()
    arch, model, _ = load_checkpoint(V1)
    with torch.no_grad():
        assert torch.allclose(model(x), logits, atol=1e-5)
        torch.save(load_file(str(V1)), tmp_path / "v1.pt")  # a plain torch state dict of the old layout
        assert torch.allclose(load_weights(tmp_path / "v1.pt", arch)(x), logits, atol=1e-5)
        resaved = save_checkpoint(tmp_path / "v2.safetensors", arch, model)
        with safe_open(str(resaved), framework="pt") as f:
            assert f.metadata()["schema"] == "2" and not any(".body." in k for k in f.keys())
        assert torch.allclose(load_checkpoint(resaved)[1](x), logits, atol=1e-5)
        space = get_space(arch.space)  # a LEMONADE child inherits the migrated weights exactly
        child_arch, state = space.morphisms().apply(arch, model.state_dict(), ["k3k5@l1", "e3e6@l3"])
        child = space.build(child_arch)
        child.load_state_dict(state, strict=True)
        assert torch.allclose(child.eval()(x), logits, atol=1e-5)


def test_supernet_weights_of_the_old_key_layout_load_into_a_supernet():
    x, logits = _v1_probe()
    old = load_file(str(V1))
    arch, _, _ = load_checkpoint(V1)
    space = get_space(arch.space)
    net = space.supernet()
    chosen = dict(zip(net.names, space.encode(arch)))
    # The old supernet's keys: the arch's, with `ops.<candidate>` after the layer name.
    old_net = {}
    for key, value in old.items():
        layer, _, rest = key.partition(".")
        old_net[f"{layer}.ops.{chosen[layer]}.{rest}" if layer in chosen else key] = value
    upgraded = upgrade_state_dict(net, old_net)
    assert set(upgraded) <= set(net.state_dict())
    net.load_state_dict({**net.state_dict(), **upgraded}, strict=True)
    model = space.build(arch)
    model.load_state_dict(net.path_state_dict(arch), strict=True)
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), logits, atol=1e-5)
