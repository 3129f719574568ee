"""Datasets and training: real data, the MNIST-5k accuracy goal, determinism, checkpoints."""

from __future__ import annotations

import pytest
import torch

from hwnas.errors import HwnasError, UnknownNameError
from hwnas.spaces import get_space
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


def test_mobile_arch_reaches_95_percent_on_mnist5k_in_three_epochs():
    space = get_space("mobile:mnist")
    arch = space.parse("k3_e3-k3_e6-k3_e3-k5_e6-k3_e3-k5_e6-k3_e3")
    _, result = train_arch(arch, "mnist5k", TrainConfig(epochs=3, seed=0))
    assert result.test_accuracy >= 0.95
    assert result.val_accuracy >= 0.9


def test_same_seed_same_training_and_fidelity_changes_result():
    arch = get_space("mobile:mnist").sample(4)
    cfg = TrainConfig(epochs=1, seed=3)
    _, a = train_arch(arch, "digits", cfg)
    _, b = train_arch(arch, "digits", cfg)
    assert (a.val_accuracy, a.test_accuracy, a.train_loss) == (b.val_accuracy, b.test_accuracy, b.train_loss)
    _, c = train_arch(arch, "digits", TrainConfig(epochs=1, seed=3, data_fraction=0.2))
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
