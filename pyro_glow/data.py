r"""Data for training and evaluating flows: two moons, its true density, and image datasets.

- :func:`make_moons_data` draws scikit-learn's two-moons data as float32 tensors.
- :func:`moons_log_density` is the *true* log-density of the two-moons generator, the floor
  a model's test NLL on that data can be compared with.
- :func:`image_dataset` opens CIFAR-10 or a folder of images as ``uint8`` tensors
  ``[C, H, W]``; dequantize them with :func:`pyro_glow.metrics.dequantize`.
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch.utils.data import Dataset

from .transforms.base import check_tensor

if TYPE_CHECKING:
    import PIL.Image


def _check_size(owner: str, name: str, value: object) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{owner}: {name} must be an int >= 1; got {value!r}")
    return int(value)


def _check_noise(owner: str, noise: object, positive: bool) -> float:
    bound = "> 0" if positive else ">= 0"
    if not isinstance(noise, numbers.Real) or isinstance(noise, bool):
        raise ValueError(f"{owner}: noise must be a real number {bound}; got {noise!r}")
    value = float(noise)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{owner}: noise must be a finite number {bound}; got {noise!r}")
    return value


def make_moons_data(
    train_size: int = 10000, test_size: int = 5000, noise: float = 0.05, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two-moons training and test sets, float32 tensors ``[train_size, 2]`` and
    ``[test_size, 2]``.

    Both come from ``sklearn.datasets.make_moons(shuffle=True, noise=noise)``: the training
    set with ``random_state=seed``, the test set drawn independently with
    ``random_state=seed + 1``. Labels are dropped. The true density of this data is
    :func:`moons_log_density`.

    Args:
        train_size: number of training points (>= 1).
        test_size: number of test points (>= 1).
        noise: standard deviation of the isotropic Gaussian noise (>= 0).
        seed: random state of the training set; the test set uses ``seed + 1``.

    Example:
        >>> train, test = make_moons_data(train_size=100, test_size=50)
        >>> train.shape, test.shape, train.dtype
        (torch.Size([100, 2]), torch.Size([50, 2]), torch.float32)
    """
    from sklearn.datasets import make_moons

    train_size = _check_size("make_moons_data", "train_size", train_size)
    test_size = _check_size("make_moons_data", "test_size", test_size)
    noise = _check_noise("make_moons_data", noise, positive=False)
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
        raise ValueError(f"make_moons_data: seed must be an int; got {seed!r}")
    seed = int(seed)

    def draw(n: int, random_state: int) -> torch.Tensor:
        x, _ = make_moons(n_samples=n, shuffle=True, noise=noise, random_state=random_state)
        return torch.as_tensor(x, dtype=torch.float32)

    return draw(train_size, seed), draw(test_size, seed + 1)


def moons_log_density(x: torch.Tensor, noise: float, points: int = 4096) -> torch.Tensor:
    r"""The true log-density of scikit-learn's two-moons data at ``x`` (shape ``[..., 2]``).

    ``sklearn.datasets.make_moons`` puts half the points on the outer half-circle
    :math:`c_0(t) = (\cos t, \sin t)` and half on the inner one
    :math:`c_1(t) = (1 - \cos t, 1 - \sin t - 0.5)`, with ``t`` evenly spaced on
    :math:`[0, \pi]`, and adds isotropic Gaussian noise of standard deviation ``noise``.
    Treating ``t`` as uniform on :math:`[0, \pi]` (the limit of many points), the density is

    .. math::

        p(x) = \frac{1}{2} \sum_{c \in \{0, 1\}} \frac{1}{\pi} \int_0^\pi
            \mathcal{N}(x \mid c(t), \sigma^2 I)\, dt,

    computed here in float64 by the midpoint rule on ``points`` nodes
    :math:`t_j = (j + 1/2)\pi / \text{points}`, in log space with ``logsumexp``:
    :math:`\log p(x) = \operatorname{logsumexp}_{c, j} \log\mathcal{N}(x \mid c(t_j),
    \sigma^2 I) - \log(2\,\text{points})`.

    Quadrature error, measured (torch 2.14) by comparing ``points=4096`` with 4x as many
    nodes at ``noise=0.05``: on the 5000 test points of :func:`make_moons_data` the
    log-density differs by at most ``5.0e-5`` nats and their mean (the NLL) by ``3e-8``; on a
    grid over :math:`[-2, 3] \times [-1.5, 2]` by at most ``1.3e-4`` where
    :math:`\log p > -10` and ``8e-3`` in the far tail (:math:`\log p \approx -650`). The
    integrand is not periodic in ``t``, so the error falls as :math:`O(\text{points}^{-2})`
    (``256``: ``1.3e-2``, ``1024``: ``8e-4`` on the test points) and grows as ``noise``
    shrinks (the integrand's width in ``t`` is about ``noise``): keep ``pi / points`` well
    below ``noise``. At ``noise=0.1`` the grid error is ``3.5e-5`` where :math:`\log p > -10`.

    The NLL of the default test set (``make_moons_data()[1]``: 5000 points, noise 0.05,
    ``random_state=1``) under this density is ``0.3004`` nats, the floor for a model's test
    NLL on that data (up to the sampling error of 5000 points).

    Args:
        x: points, a floating tensor ``[..., 2]``.
        noise: the generator's noise standard deviation (> 0).
        points: number of quadrature nodes per half-circle (>= 1).

    Returns:
        The log-density, shape ``x.shape[:-1]``, always float64 (cast with ``.to(x.dtype)``
        if needed), on ``x``'s device.

    Example:
        >>> x = torch.tensor([[0.0, 1.0], [0.5, 0.25]])  # on the outer moon; between them
        >>> log_p = moons_log_density(x, noise=0.1)
        >>> log_p.dtype, [round(value, 2) for value in log_p.tolist()]
        (torch.float64, [-0.45, -9.19])
    """
    check_tensor(x, 1, "moons_log_density", "x")
    if x.shape[-1] != 2:
        raise ValueError(f"moons_log_density: x must have shape [..., 2]; got {list(x.shape)}")
    noise = _check_noise("moons_log_density", noise, positive=True)
    points = _check_size("moons_log_density", "points", points)

    t = (torch.arange(points, dtype=torch.float64, device=x.device) + 0.5) * (math.pi / points)
    centres = torch.cat(
        [
            torch.stack([torch.cos(t), torch.sin(t)], dim=-1),
            torch.stack([1 - torch.cos(t), 1 - torch.sin(t) - 0.5], dim=-1),
        ]
    )  # [2 * points, 2]
    log_norm = -math.log(2 * math.pi * noise**2) - math.log(2 * points)

    flat = x.reshape(-1, 2).to(torch.float64)
    chunk = max(1, 2**22 // len(centres))  # bound the [chunk, 2 * points] intermediates
    out = []
    for part in flat.split(chunk):
        square = (part[:, :1] - centres[:, 0]).square() + (part[:, 1:] - centres[:, 1]).square()
        out.append(torch.logsumexp(square / (-2 * noise**2), dim=-1) + log_norm)
    result = torch.cat(out) if out else flat.new_zeros(0)
    return result.reshape(x.shape[:-1])


def _load_rgb(path: str) -> PIL.Image.Image:
    """Open an image file as an RGB PIL image (a module-level function, so it pickles into
    DataLoader workers)."""
    from PIL import Image

    with open(path, "rb") as file:
        return Image.open(file).convert("RGB")


def image_dataset(spec: str, root: str | Path = "data", train: bool = True) -> Dataset:
    """An image dataset whose items are ``(uint8 tensor [C, H, W], int label)``.

    - ``"cifar10"``: ``torchvision.datasets.CIFAR10`` under ``root``, downloaded there if
      absent, the training (50,000) or test (10,000) split.
    - ``"folder:PATH"``: ``torchvision.datasets.ImageFolder`` (one subfolder per class),
      every image converted to RGB. If ``PATH/train`` and ``PATH/test`` exist, the split is
      ``PATH/train`` or ``PATH/test``; if neither exists, ``PATH`` itself is returned for
      *both* values of ``train`` and the caller must split it (e.g. with
      ``torch.utils.data.random_split``). ``root`` is not used.

    Pixels are not rescaled; dequantize with :func:`pyro_glow.metrics.dequantize`.

    Args:
        spec: ``"cifar10"`` or ``"folder:PATH"``.
        root: where CIFAR-10 is (or is downloaded to).
        train: the training split if True, else the test split.

    Raises:
        TypeError: if ``spec`` is not a string.
        ValueError: for an unknown ``spec``, a missing ``PATH``, only one of
            ``PATH/train`` and ``PATH/test``, or a folder with no class folders of images.

    Example:
        .. code-block:: python

            data = image_dataset("folder:../shared/data/cifar10-jpeg", train=False)
            image, label = data[0]  # uint8 [3, 32, 32], int
    """
    import torchvision
    from torchvision.transforms import PILToTensor

    if not isinstance(spec, str):
        raise TypeError(
            f"image_dataset: spec must be a string, 'cifar10' or 'folder:PATH'; got {spec!r}"
        )
    if spec == "cifar10":
        return torchvision.datasets.CIFAR10(
            str(root), train=train, download=True, transform=PILToTensor()
        )
    if spec.startswith("folder:"):
        path = Path(spec[len("folder:") :]).expanduser()
        if not spec[len("folder:") :]:
            raise ValueError("image_dataset: 'folder:' needs a path, as in 'folder:PATH'")
        if not path.is_dir():
            raise ValueError(f"image_dataset: folder {str(path)!r} does not exist or is no folder")
        splits = [(path / name).is_dir() for name in ("train", "test")]
        if all(splits):
            path = path / ("train" if train else "test")
        elif any(splits):
            present, missing = ("train", "test") if splits[0] else ("test", "train")
            raise ValueError(
                f"image_dataset: folder {str(path)!r} has a {present}/ subfolder but no "
                f"{missing}/ one; give both splits or neither"
            )
        try:
            return torchvision.datasets.ImageFolder(
                str(path), transform=PILToTensor(), loader=_load_rgb
            )
        except FileNotFoundError as error:
            raise ValueError(
                f"image_dataset: no images in folder {str(path)!r}: {error}"
            ) from error
    raise ValueError(
        f"image_dataset: unknown dataset spec {spec!r}; expected 'cifar10' or 'folder:PATH'"
    )
