"""Data: the two-moons sets and their true density, image datasets."""

import math

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from sklearn.datasets import make_moons

from pyro_glow.data import image_dataset, make_moons_data, moons_log_density

# --- two moons -----------------------------------------------------------------------------


def test_make_moons_data_matches_sklearn():
    train, test = make_moons_data(train_size=300, test_size=101, noise=0.1, seed=5)
    assert train.shape == (300, 2) and test.shape == (101, 2)
    assert train.dtype == test.dtype == torch.float32
    expected_train = make_moons(300, shuffle=True, noise=0.1, random_state=5)[0]
    expected_test = make_moons(101, shuffle=True, noise=0.1, random_state=6)[0]
    assert torch.equal(train, torch.as_tensor(expected_train, dtype=torch.float32))
    assert torch.equal(test, torch.as_tensor(expected_test, dtype=torch.float32))
    again, _ = make_moons_data(train_size=300, test_size=101, noise=0.1, seed=5)
    assert torch.equal(train, again)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"train_size": 0}, "train_size"),
        ({"test_size": -1}, "test_size"),
        ({"train_size": 2.5}, "train_size"),
        ({"noise": -0.1}, "noise"),
        ({"noise": float("nan")}, "noise"),
        ({"seed": "zero"}, "seed"),
    ],
)
def test_make_moons_data_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        make_moons_data(**kwargs)


def test_moons_density_integrates_to_one():
    # Riemann sum on a 0.02 grid over [-2, 3] x [-1.5, 2]: both moons and 10 noise standard
    # deviations around them. Measured: 1 to 1e-15 (the grid error of a Gaussian of std 0.1 at
    # spacing 0.02 is far below that); the tolerance only allows for float64 round-off.
    xs = torch.arange(-2.0, 3.0, 0.02, dtype=torch.float64) + 0.01
    ys = torch.arange(-1.5, 2.0, 0.02, dtype=torch.float64) + 0.01
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="ij"), dim=-1)
    log_p = moons_log_density(grid, noise=0.1, points=256)
    assert log_p.shape == grid.shape[:-1] and log_p.dtype == torch.float64
    assert abs(log_p.exp().sum().item() * 0.02**2 - 1) < 1e-6
    # Most of the mass sits within 3 noise std of the two half-circles, none far away.
    assert moons_log_density(torch.tensor([[0.0, 1.0], [1.0, -0.5]]), 0.1).exp().min() > 0.5
    assert moons_log_density(torch.tensor([[0.5, 0.25], [-1.0, -1.0]]), 0.1).exp().max() < 1e-3


def test_moons_density_agrees_with_counts_of_sklearn_samples():
    # Monte Carlo: the fraction of 10^6 sklearn samples in a 0.2 x 0.2 box estimates the box's
    # mass, computed from the density on a 20 x 20 midpoint grid inside the box. The counts
    # are binomial (standard deviation about 1% of the count here); allow 4.5 of them.
    noise, n, half = 0.3, 1_000_000, 0.1
    samples = torch.as_tensor(make_moons(n, noise=noise, random_state=0)[0])
    centres = torch.tensor([[0.0, 1.0], [1.0, -0.5], [0.5, 0.25], [-1.0, 0.0], [2.0, 0.6]])
    offsets = (torch.arange(20, dtype=torch.float64) + 0.5) / 20 * 2 * half - half
    box = torch.stack(torch.meshgrid(offsets, offsets, indexing="ij"), dim=-1).reshape(-1, 2)
    for centre in centres.double():
        inside = ((samples - centre).abs() < half).all(dim=-1).sum().item()
        mass = moons_log_density(centre + box, noise).exp().mean().item() * (2 * half) ** 2
        expected = n * mass
        assert abs(inside - expected) < 4.5 * math.sqrt(expected * (1 - mass)), centre


def test_moons_density_of_the_test_set():
    # The true NLL of the default test set (5000 points, noise 0.05, random_state=1) is 0.3004
    # nats; 1024 nodes are within 1e-6 of it (the docstring's measurements use 4096 and 16384).
    _, test = make_moons_data()
    log_p = moons_log_density(test, noise=0.05, points=1024)
    assert abs(-log_p.mean().item() - 0.30039) < 1e-4
    coarse = moons_log_density(test[:500], noise=0.05, points=256)
    fine = moons_log_density(test[:500], noise=0.05, points=1024)
    # O(points^-2): measured 1.3e-2 at 256 and 8e-4 at 1024 against four times the nodes.
    assert (coarse - fine).abs().max() < 2e-2
    torch.testing.assert_close(fine, log_p[:500])


def test_moons_density_batch_shapes_and_bad_input():
    x = torch.randn(3, 4, 2)
    log_p = moons_log_density(x, noise=0.2, points=64)
    assert log_p.shape == (3, 4)
    torch.testing.assert_close(log_p[1, 2], moons_log_density(x[1, 2], noise=0.2, points=64))
    assert moons_log_density(torch.zeros(0, 2), noise=0.2).shape == (0,)
    with pytest.raises(ValueError, match=r"\[\.\.\., 2\]"):
        moons_log_density(torch.zeros(5, 3), noise=0.1)
    with pytest.raises(TypeError, match="floating-point"):
        moons_log_density(torch.zeros(5, 2, dtype=torch.long), noise=0.1)
    for noise in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="noise"):
            moons_log_density(x, noise=noise)
    with pytest.raises(ValueError, match="points"):
        moons_log_density(x, noise=0.1, points=0)


# --- image datasets ------------------------------------------------------------------------


def _write_images(folder, classes, per_class, size=(8, 6)):
    """``per_class`` images of width 8 and height 6 per class, pixel value = class index * 40
    + image index, in mixed modes (RGB PNG, grayscale PNG, RGBA PNG, JPEG)."""
    modes = [("RGB", "png"), ("L", "png"), ("RGBA", "png"), ("RGB", "jpg")]
    for label, name in enumerate(classes):
        (folder / name).mkdir(parents=True)
        for index in range(per_class):
            mode, suffix = modes[index % len(modes)]
            value = label * 40 + index
            colour = value if mode == "L" else (value,) * len(mode)
            Image.new(mode, size, colour).save(folder / name / f"{index}.{suffix}")


def test_image_dataset_with_train_and_test_folders(tmp_path):
    _write_images(tmp_path / "train", ["cat", "dog"], per_class=4)
    _write_images(tmp_path / "test", ["cat", "dog"], per_class=2)
    train = image_dataset(f"folder:{tmp_path}", train=True)
    test = image_dataset(f"folder:{tmp_path}", root="unused", train=False)
    assert len(train) == 8 and len(test) == 4
    assert train.classes == test.classes == ["cat", "dog"]
    for dataset in (train, test):
        for image, label in dataset:
            assert image.dtype == torch.uint8 and image.shape == (3, 6, 8)
            assert isinstance(label, int)
    labels = [label for _, label in train]
    assert labels == [0, 0, 0, 0, 1, 1, 1, 1]
    # Grayscale and RGBA files come out as 3-channel RGB with the same value everywhere.
    for image, label in train:
        assert image.min() == image.max()
        assert label * 40 <= image[0, 0, 0] < label * 40 + 5  # JPEG may be off by one or two


def test_image_dataset_without_split_folders(tmp_path):
    _write_images(tmp_path, ["a", "b", "c"], per_class=2)
    train = image_dataset(f"folder:{tmp_path}", train=True)
    test = image_dataset(f"folder:{tmp_path}", train=False)
    assert len(train) == len(test) == 6 and train.classes == ["a", "b", "c"]
    assert torch.equal(train[5][0], test[5][0]) and train[5][1] == 2


def test_image_dataset_cifar10_calls_torchvision(monkeypatch, tmp_path):
    calls = []

    def fake_cifar10(root, train, download, transform):
        calls.append((root, train, download, type(transform).__name__))
        return "dataset"

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", fake_cifar10)
    assert image_dataset("cifar10", root=tmp_path, train=False) == "dataset"
    assert calls == [(str(tmp_path), False, True, "PILToTensor")]


def test_image_dataset_rejects_bad_specs(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset spec 'mnist'"):
        image_dataset("mnist")
    with pytest.raises(ValueError, match="unknown dataset spec 'CIFAR10'"):
        image_dataset("CIFAR10")
    with pytest.raises(ValueError, match="needs a path"):
        image_dataset("folder:")
    missing = tmp_path / "nowhere"
    with pytest.raises(ValueError, match="nowhere.*does not exist"):
        image_dataset(f"folder:{missing}")
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(ValueError, match="file.png.*is no folder"):
        image_dataset(f"folder:{tmp_path / 'file.png'}")
    with pytest.raises(TypeError, match="spec must be a string"):
        image_dataset(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        image_dataset(f"folder:{tmp_path / 'empty'}")
    _write_images(tmp_path / "half" / "train", ["a"], per_class=1)
    with pytest.raises(ValueError, match="train/ subfolder but no test/"):
        image_dataset(f"folder:{tmp_path / 'half'}", train=True)


def test_image_dataset_loads_in_dataloader_workers(tmp_path):
    _write_images(tmp_path, ["a", "b"], per_class=3)
    loader = torch.utils.data.DataLoader(
        image_dataset(f"folder:{tmp_path}"), batch_size=6, num_workers=1
    )
    images, labels = next(iter(loader))
    assert images.shape == (6, 3, 6, 8) and labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert np.array_equal(images[:, 0, 0, 0].numpy() // 40, labels.numpy())
