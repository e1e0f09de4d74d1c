"""Figures of trained flows: samples, densities, the data through each flow step, latent
interpolations and training curves.

Everything here is drawn off-screen (matplotlib's Agg backend) and written to PNG files at
110 dpi; each figure function returns the paths it wrote.

- :func:`save_samples` writes samples as a tensor (``.pt``) or a picture (``.png``).
- :func:`moons_figures` draws a trained two-dimensional flow: the data, samples beside test
  data, the model's density, and the test data after each flow step (:func:`layer_stages`).
- :func:`image_figures` draws a trained image flow: sample grids at several temperatures, the
  bits-per-dimension curve of training and latent interpolations between test images
  (:func:`interpolate_latents`, :func:`interpolation_images`).
- :func:`plot_run` draws whichever of the two fits a finished :class:`~pyro_glow.training.Trainer`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import Tensor  # noqa: E402
from torchvision.utils import make_grid  # noqa: E402

from .flow import Flow  # noqa: E402
from .metrics import quantize  # noqa: E402
from .transforms import ElementwiseAffine  # noqa: E402

if TYPE_CHECKING:
    from .training import Trainer, TrainingData

DPI = 110
TEMPERATURES = (0.0, 0.5, 0.7, 1.0)
STEP_PARTS = 3  # AffineCoupling, InvertibleConv1x1, ActNorm (generative order)
MAX_POINTS = 2000  # points per scatter panel: more only hides the structure
POINT_CMAP = "viridis"
DENSITY_CMAP = "magma"


# ----------------------------------------------------------------------------------------
# Helpers


def _device(flow: Flow) -> torch.device:
    """The device of the flow's parameters (or buffers; the CPU if it has neither)."""
    for tensor in [*flow.parameters(), *flow.buffers()]:
        return tensor.device
    return torch.device("cpu")


def _save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` to ``path`` (creating its folder) and close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _limits(points: Tensor, margin: float = 0.1) -> tuple[tuple[float, float], tuple[float, float]]:
    """Axis limits ``(xlim, ylim)`` covering the finite 2-D ``points`` with a relative margin."""
    finite = points[torch.isfinite(points).all(dim=1)]
    if finite.numel() == 0:
        return (-1.0, 1.0), (-1.0, 1.0)
    low, high = finite.min(dim=0).values, finite.max(dim=0).values
    pad = (high - low).clamp(min=1e-3) * margin
    low, high = (low - pad).tolist(), (high + pad).tolist()
    return (low[0], high[0]), (low[1], high[1])


def _subsample(x: Tensor, n: int = MAX_POINTS) -> Tensor:
    """The first ``n`` rows of ``x`` (the data sets are already shuffled)."""
    return x[:n]


def _scatter(ax: Any, points: Tensor, **kwargs: Any) -> Any:
    """Scatter 2-D ``points`` with small markers; returns the collection."""
    points = points.detach().cpu()
    options = {"s": 4, "alpha": 0.6, "linewidths": 0, "rasterized": True}
    options.update(kwargs)
    return ax.scatter(points[:, 0].numpy(), points[:, 1].numpy(), **options)


def _label_2d(ax: Any, title: str, xlabel: str = "$x_1$", ylabel: str = "$x_2$") -> None:
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_aspect("equal", adjustable="box")
    ax.grid(True, alpha=0.25)


def _check_images(images: Tensor, owner: str) -> None:
    if images.dim() != 4 or images.shape[1] not in (1, 3) or images.shape[0] == 0:
        raise ValueError(
            f"{owner}: images must have shape [N, C, H, W] with N >= 1 and C = 1 or 3; "
            f"got {list(images.shape)}"
        )


def _image_grid_figure(
    images: Tensor,
    title: str,
    nrow: int | None = None,
    column_labels: list[str] | None = None,
    xlabel: str | None = None,
) -> Figure:
    """A figure of ``images`` ``[N, C, H, W]`` (values in ``[0, 1]``, clamped) in a grid of
    ``nrow`` columns (default about ``sqrt(N)``), upscaled so that small images stay visible,
    optionally with a label under each column and one under the grid."""
    _check_images(images, "image grid")
    count, _, height, width = images.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(count)))
    padding = max(1, width // 16)
    grid = make_grid(
        images.detach().float().cpu().nan_to_num(0.0).clamp(0.0, 1.0),
        nrow=nrow,
        padding=padding,
        pad_value=1.0,
    )
    grid_h, grid_w = grid.shape[1:]
    # Each image at least ~56 px on screen, the whole figure at most ~13 inches wide.
    scale = min(max(1.0, 56 / width), 13 * DPI / grid_w)
    extra = 0.5 * (column_labels is not None) + 0.3 * (xlabel is not None)
    fig_w, fig_h = (
        grid_w * scale / DPI + 0.3,
        grid_h * scale / DPI + 0.6 + 0.25 * title.count("\n") + extra,
    )
    fig, ax = plt.subplots(figsize=(max(fig_w, 3.0), max(fig_h, 1.5)), layout="constrained")
    ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_title(title)
    if column_labels is None and xlabel is None:
        ax.set_axis_off()
        return fig
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_yticks([])
    centres = [padding + j * (width + padding) + width / 2 for j in range(len(column_labels or []))]
    ax.set_xticks(centres, column_labels or [])
    ax.tick_params(axis="x", length=0)
    if xlabel is not None:
        ax.set_xlabel(xlabel)
    return fig


# ----------------------------------------------------------------------------------------
# Samples


def save_samples(samples: Tensor, path: Path, title: str | None = None) -> None:
    """Write ``samples`` to ``path``: the tensor itself (``.pt``) or a picture (``.png``).

    A ``.png`` of vectors ``[N, 2]`` is a scatter plot; of images ``[N, C, H, W]`` (``C`` 1 or
    3, values in the flows' data units ``[0, 1)``, clamped to ``[0, 1]`` for display) a grid of
    about ``sqrt(N)`` columns.

    Args:
        samples: the samples, e.g. ``flow.sample(n)``.
        path: where to write; its suffix (``.pt`` or ``.png``) chooses the format.
        title: the figure's title (``.png`` only); default ``"N samples"``.

    Raises:
        TypeError: if ``samples`` is not a tensor.
        ValueError: for another suffix, or a ``.png`` of samples that are neither ``[N, 2]``
            nor ``[N, 1 or 3, H, W]`` with ``N >= 1``.
    """
    if not isinstance(samples, Tensor):
        raise TypeError(f"save_samples: samples must be a torch.Tensor; got {type(samples)}")
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".pt":
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(samples.detach().cpu(), path)
        return
    if suffix != ".png":
        raise ValueError(
            f"save_samples: {path} has suffix {path.suffix!r}; use .pt (tensor) or .png (plot)"
        )
    title = title or f"{len(samples)} samples"
    if samples.dim() == 2 and samples.shape[1] == 2 and samples.shape[0] >= 1:
        fig, ax = plt.subplots(figsize=(5.0, 4.5), layout="constrained")
        _scatter(ax, samples.float(), color="tab:blue", s=5)
        _label_2d(ax, title)
        _save(fig, path)
        return
    if samples.dim() == 4 and samples.shape[1] in (1, 3) and samples.shape[0] >= 1:
        _save(_image_grid_figure(samples, title), path)
        return
    raise ValueError(
        f"save_samples: a .png needs vectors [N, 2] or images [N, C, H, W] (C = 1 or 3, "
        f"N >= 1); got samples of shape {list(samples.shape)}"
    )


# ----------------------------------------------------------------------------------------
# Two-dimensional flows


@torch.no_grad()
def layer_stages(flow: Flow, x: Tensor) -> list[tuple[str, Tensor]]:
    """The data ``x`` ``[N, 2]`` on its way to the latent space, one stage per flow step.

    The flow's ``transform.parts`` are in generative order: flow steps of three parts
    (``AffineCoupling``, ``InvertibleConv1x1``, ``ActNorm``) followed, as the last part, by
    the fixed :class:`~pyro_glow.transforms.ElementwiseAffine` standardisation of the data
    (as built by :func:`pyro_glow.training.build_flow`; a flow without it simply has no
    standardisation stage). The parts are applied in the normalizing direction
    (``part.inv``), last part first.

    Returns:
        ``[("data", x), ("standardised", ...), ("step 1", ...), ..., ("step K", z)]``: the
        titles and the points (on the CPU) after the standardisation and after each complete
        flow step; the last stage is the latent ``z = flow.transform.inv(x)``.

    Raises:
        ValueError: if the flow's parts (without the standardisation) do not come in steps
            of three.
    """
    parts = list(flow.transform.parts)
    standardise = parts.pop() if parts and isinstance(parts[-1], ElementwiseAffine) else None
    if len(parts) % STEP_PARTS:
        raise ValueError(
            f"layer_stages: expected flow steps of {STEP_PARTS} parts (AffineCoupling, "
            f"InvertibleConv1x1, ActNorm) before the data standardisation; got "
            f"{len(parts)} parts: {[type(p).__name__ for p in parts]}"
        )
    h = x.to(_device(flow))
    stages = [("data", h.cpu())]
    if standardise is not None:
        h = standardise.inv(h)
        stages.append(("standardised", h.cpu()))
    for index, part in enumerate(reversed(parts), start=1):
        h = part.inv(h)
        if index % STEP_PARTS == 0:
            stages.append((f"step {index // STEP_PARTS}", h.cpu()))
    flow.clear_cache()
    return stages


@torch.no_grad()
def layers_figure(flow: Flow, x: Tensor) -> Figure:
    """The course's figure of the data after each flow step, ending beside the prior.

    Panels: the data ``x`` ``[N, 2]``, the standardised data, the points after each flow
    step (see :func:`layer_stages`; the last is the latent ``z``), and samples from the prior.
    Every point keeps the colour of its first data coordinate, so the moons can be followed
    through the flow. The latent and prior panels share their axes.
    """
    x = _subsample(x)
    stages = layer_stages(flow, x)
    prior = flow.prior.sample((len(x),)).cpu()
    count = len(stages) + 1
    ncols = min(count, 6)
    nrows = math.ceil(count / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(2.7 * ncols, 2.7 * nrows + 0.6), layout="constrained", squeeze=False
    )
    flat = list(axes.flat)
    for ax in flat[count:]:
        fig.delaxes(ax)
    colour = x[:, 0].cpu().numpy()
    # Latent and prior on the same square axes, at least +-3, outliers beyond +-6 cut off.
    spread = torch.cat([stages[-1][1], prior]).abs().nan_to_num(0.0, posinf=0.0)
    bound = min(6.0, max(3.0, 1.05 * spread.flatten().quantile(0.995).item()))
    points = None
    for index, (ax, (name, h)) in enumerate(zip(flat, stages, strict=False)):
        last = index == len(stages) - 1
        title = {"data": "Test data", "standardised": "Standardised"}.get(name, f"After {name}")
        if last:
            title = f"Latent z (after {name})"
        points = _scatter(ax, h, c=colour, cmap=POINT_CMAP, s=3)
        labels = ("$z_1$", "$z_2$") if last else ("$h_1$", "$h_2$")
        if index == 0:
            labels = ("$x_1$", "$x_2$")
        _label_2d(ax, title, *labels)
        if last:
            ax.set_xlim(-bound, bound)
            ax.set_ylim(-bound, bound)
    ax = flat[len(stages)]
    _scatter(ax, prior, color="tab:gray", s=3)
    _label_2d(ax, "Samples from the prior", "$z_1$", "$z_2$")
    ax.set_xlim(-bound, bound)
    ax.set_ylim(-bound, bound)
    fig.suptitle("Test data through the flow, normalizing direction (data → latent)")
    if points is not None:
        fig.colorbar(points, ax=flat[:count], shrink=0.8, label="$x_1$ of the data point")
    return fig


@torch.no_grad()
def moons_figures(flow: Flow, data: TrainingData, out: Path) -> list[Path]:
    """Figures of a trained two-dimensional flow, written to the folder ``out``.

    - ``moons_data.png``: the training data.
    - ``moons_samples.png``: flow samples beside as many test points, on the same axes.
    - ``moons_density.png``: the model's density ``exp(log_prob)`` on a grid covering the
      data, test points overlaid.
    - ``moons_layers.png``: the test data after each flow step (:func:`layers_figure`).

    Args:
        flow: a :class:`~pyro_glow.Flow` over ``[2]`` whose ``log_prob`` and ``sample`` are
            in data units (as trained by :class:`~pyro_glow.training.Trainer`).
        data: :class:`~pyro_glow.training.TrainingData` with float ``[N, 2]`` ``train`` and
            ``test``.
        out: the folder of the figures (created if needed).

    Returns:
        The paths written.
    """
    out = Path(out)
    device = _device(flow)
    train, test = data.train.float().cpu(), data.test.float().cpu()
    xlim, ylim = _limits(torch.cat([train, test]), margin=0.15)
    written = []

    fig, ax = plt.subplots(figsize=(5.5, 4.2), layout="constrained")
    _scatter(ax, _subsample(train), c=_subsample(train)[:, 0].numpy(), cmap=POINT_CMAP, s=4)
    _label_2d(ax, f"Training data ({len(train)} points, {min(len(train), MAX_POINTS)} shown)")
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    written.append(_save(fig, out / "moons_data.png"))

    shown = _subsample(test)
    samples = flow.sample(len(shown)).cpu()
    fig, axes = plt.subplots(1, 2, figsize=(10.0, 3.7), layout="constrained")
    _scatter(axes[0], shown, color="tab:blue")
    _label_2d(axes[0], f"Test data ({len(shown)} points)")
    _scatter(axes[1], samples, color="tab:orange")
    _label_2d(axes[1], f"Flow samples ({len(samples)})")
    for ax in axes:
        ax.set_xlim(*xlim)
        ax.set_ylim(*ylim)
    fig.suptitle("Samples of the flow beside the test data")
    written.append(_save(fig, out / "moons_samples.png"))

    resolution = 200
    gx = torch.linspace(*xlim, resolution)
    gy = torch.linspace(*ylim, resolution)
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1).reshape(-1, 2)
    density = torch.cat(
        [flow.log_prob(chunk.to(device)).exp().cpu() for chunk in grid.split(10000)]
    ).reshape(resolution, resolution)
    fig, ax = plt.subplots(figsize=(7.0, 3.9), layout="constrained")
    image = ax.imshow(
        density.nan_to_num(0.0).numpy(),
        origin="lower",
        extent=(*xlim, *ylim),
        cmap=DENSITY_CMAP,
        interpolation="bilinear",
        aspect="equal",
    )
    _scatter(ax, _subsample(test, 500), color="white", s=2, alpha=0.35)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_title("Model density $p(x)$ with test points")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    fig.colorbar(image, ax=ax, shrink=0.85, label="$p(x)$")
    written.append(_save(fig, out / "moons_density.png"))

    written.append(_save(layers_figure(flow, test), out / "moons_layers.png"))
    flow.clear_cache()
    return written


# ----------------------------------------------------------------------------------------
# Image flows


def interpolate_latents(z_a: Tensor, z_b: Tensor, steps: int) -> Tensor:
    r"""``steps`` latents on the path :math:`z(t) = \cos(\tfrac{\pi}{2} t)\, z_a +
    \sin(\tfrac{\pi}{2} t)\, z_b`, ``t`` evenly spaced in ``[0, 1]``.

    The path starts exactly at ``z_a`` and ends exactly at ``z_b``. Unlike the straight line
    it keeps the squared norm at :math:`\cos^2 |z_a|^2 + \sin^2 |z_b|^2` (plus a cross term
    that is small for independent Gaussian latents), so the midpoints stay in the typical set
    of the prior instead of shrinking towards its mode: the spherical path of RealNVP's
    manifold figure (Dinh et al., arXiv:1605.08803), with the second latent as the other end.

    Args:
        z_a: the first latent, any shape.
        z_b: the second latent, ``z_a``'s shape.
        steps: number of points, at least 2 (both ends included).

    Returns:
        ``[steps, *z_a.shape]``.

    Raises:
        ValueError: if the shapes differ or ``steps`` is not an int >= 2.

    Example:
        >>> path = interpolate_latents(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), 3)
        >>> path[0].tolist(), path[-1].tolist(), round(path[1].norm().item(), 6)
        ([1.0, 0.0], [0.0, 1.0], 1.0)
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 2:
        raise ValueError(f"interpolate_latents: steps must be an int >= 2; got {steps!r}")
    if z_a.shape != z_b.shape:
        raise ValueError(
            f"interpolate_latents: z_a and z_b must have the same shape; got "
            f"{list(z_a.shape)} and {list(z_b.shape)}"
        )
    angle = torch.linspace(0.0, math.pi / 2, steps, dtype=torch.float64)
    weight_a, weight_b = angle.cos(), angle.sin()
    weight_a[-1], weight_b[-1] = 0.0, 1.0  # exact ends (cos(pi/2) is not 0 in floating point)
    shape = (steps,) + (1,) * z_a.dim()
    weight_a = weight_a.to(z_a.dtype).to(z_a.device).reshape(shape)
    weight_b = weight_b.to(z_a.dtype).to(z_a.device).reshape(shape)
    return weight_a * z_a + weight_b * z_b


def pixels_to_units(images: Tensor, n_bits: int) -> Tensor:
    """8-bit images to the flow's data units without noise: the centre of each pixel's bin,
    ``(quantize(images, n_bits) + 1/2) / 2**n_bits``, in ``(0, 1)``."""
    return (quantize(images, n_bits).float() + 0.5) / 2**n_bits


@torch.no_grad()
def interpolation_images(
    flow: Flow, images: Tensor, n_bits: int, pairs: int = 4, steps: int = 8
) -> Tensor:
    """Images along latent paths between pairs of images (:func:`interpolate_latents`).

    Images ``2i`` and ``2i + 1`` of ``images`` (8-bit ``[N, C, H, W]``) are mapped to the flow's
    data units (:func:`pixels_to_units`) and to latents ``z = flow.transform.inv(y)``; the
    path between the two latents is mapped back through ``flow.transform``.

    Returns:
        ``[pairs, steps, C, H, W]`` in data units, not clamped (on the CPU): row ``i`` starts
        at image ``2i`` and ends at image ``2i + 1`` (up to the flow's round-off).

    Raises:
        ValueError: if there are fewer than ``2 * pairs`` images.
    """
    if images.dim() != 4 or len(images) < 2 * pairs or pairs < 1:
        raise ValueError(
            f"interpolation_images: need images [N, C, H, W] with N >= 2 * pairs = "
            f"{2 * pairs}; got shape {list(images.shape)}"
        )
    y = pixels_to_units(images[: 2 * pairs], n_bits).to(_device(flow))
    z = flow.transform.inv(y)
    path = torch.stack([interpolate_latents(z[2 * i], z[2 * i + 1], steps) for i in range(pairs)])
    x = flow.transform(path.flatten(0, 1))
    flow.clear_cache()
    return x.reshape(pairs, steps, *x.shape[1:]).cpu()


def read_metrics_log(path: Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file (one JSON object per line); unreadable lines
    (e.g. a line cut short by a killed run) are skipped, a missing file gives ``[]``."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def bits_per_dim_figure(records: list[dict[str, Any]], final: float | None = None) -> Figure | None:
    """The training curve of ``bits_per_dim`` against ``step`` (None without such records),
    with a running mean when there are many points and the final test value if given."""
    curve = sorted(
        (float(r["step"]), float(r["bits_per_dim"]))
        for r in records
        if isinstance(r.get("step"), int | float)
        and isinstance(r.get("bits_per_dim"), int | float)
        and math.isfinite(r["bits_per_dim"])
    )
    if not curve:
        return None
    steps = torch.tensor([s for s, _ in curve])
    values = torch.tensor([v for _, v in curve])
    fig, ax = plt.subplots(figsize=(6.5, 4.0), layout="constrained")
    ax.plot(steps.numpy(), values.numpy(), color="tab:blue", alpha=0.35, lw=1, label="train")
    window = len(values) // 20
    if window >= 2:
        kernel = torch.ones(1, 1, window) / window
        smooth = torch.nn.functional.conv1d(values.reshape(1, 1, -1), kernel).flatten()
        ax.plot(
            steps[window - 1 :].numpy(),
            smooth.numpy(),
            color="tab:blue",
            lw=2,
            label=f"train, mean of {window} records",
        )
    if final is not None and math.isfinite(final):
        ax.axhline(final, color="tab:red", ls="--", lw=1.5, label=f"test: {final:.3f}")
    ax.set_title("Bits per dimension during training")
    ax.set_xlabel("training step")
    ax.set_ylabel("bits per dimension")
    ax.grid(True, alpha=0.3)
    ax.legend()
    return fig


@torch.no_grad()
def image_figures(
    flow: Flow,
    data: TrainingData,
    out: Path,
    metrics_log: Path | None,
    n_samples: int = 64,
) -> list[Path]:
    """Figures of a trained image flow, written to the folder ``out``.

    - ``samples_T0.0.png``, ``samples_T0.5.png``, ``samples_T0.7.png``, ``samples_T1.0.png``:
      one grid of ``n_samples`` samples per temperature (Glow's reduced-temperature sampling;
      0 is the image of the prior's mode), one file each so they can be compared side by side.
    - ``bits_per_dim.png``: ``bits_per_dim`` against ``step`` from ``metrics_log`` (a
      ``metrics.jsonl``), with the final test value from ``metrics.json`` beside it if that
      exists; left out when the log is missing or has no such records.
    - ``interpolation.png``: 4 rows of 8 images, each row the path between the latents of two
      test images (:func:`interpolate_latents`): ``z(t) = cos(pi t / 2) z_a + sin(pi t / 2)
      z_b``, ``t`` in ``[0, 1]``, the first and last columns the two test images themselves
      (as their bins' centres, ``n_bits`` levels); left out with fewer than 2 test images.

    Images are clamped to ``[0, 1]`` for display.

    Args:
        flow: a :class:`~pyro_glow.Flow` over ``[C, H, W]`` in data units ``[0, 1)``.
        data: :class:`~pyro_glow.training.TrainingData` with ``uint8`` ``test`` images and
            ``n_bits``.
        out: the folder of the figures (created if needed).
        metrics_log: the training log, or None.
        n_samples: samples per temperature.

    Returns:
        The paths written.
    """
    out = Path(out)
    written = []
    for temperature in TEMPERATURES:
        samples = flow.sample(n_samples, temperature=temperature).cpu()
        path = out / f"samples_T{temperature:.1f}.png"
        save_samples(samples, path, title=f"Samples at temperature {temperature:g}")
        written.append(path)

    if metrics_log is not None:
        final = None
        summary = Path(metrics_log).with_name("metrics.json")
        if summary.is_file():
            try:
                final = json.loads(summary.read_text()).get("test_bits_per_dim")
            except (json.JSONDecodeError, AttributeError):
                final = None
        fig = bits_per_dim_figure(read_metrics_log(metrics_log), final)
        if fig is not None:
            written.append(_save(fig, out / "bits_per_dim.png"))

    pairs = min(4, len(data.test) // 2)
    if pairs >= 1:
        steps = 8
        path = interpolation_images(flow, data.test, data.n_bits, pairs=pairs, steps=steps)
        fig = _image_grid_figure(
            path.flatten(0, 1),
            "Latent interpolation between pairs of test images\n"
            r"$z = \cos(\pi t / 2)\, z_a + \sin(\pi t / 2)\, z_b$",
            nrow=steps,
            column_labels=[f"{t:.2f}" for t in torch.linspace(0, 1, steps).tolist()],
            xlabel="$t$ (first column: image $a$, last column: image $b$)",
        )
        written.append(_save(fig, out / "interpolation.png"))
    flow.clear_cache()
    return written


# ----------------------------------------------------------------------------------------
# A finished run


def plot_run(trainer: Trainer) -> list[Path]:
    """All figures of a finished training run, written to ``trainer.out``.

    Images: :func:`image_figures` (with ``trainer.out / "metrics.jsonl"``); vectors:
    :func:`moons_figures`. The flow is drawn in eval mode and without gradients; its previous
    mode is restored afterwards. Under ``torchrun`` only rank 0 draws (``trainer.is_main``),
    so the processes do not race to write the same files.

    Returns:
        The paths written (none on ranks other than 0).
    """
    if not getattr(trainer, "is_main", True):
        return []
    flow = trainer.flow
    was_training = flow.training
    flow.eval()
    try:
        with torch.no_grad():
            if trainer.data.is_image:
                return image_figures(flow, trainer.data, trainer.out, trainer.out / "metrics.jsonl")
            return moons_figures(flow, trainer.data, trainer.out)
    finally:
        flow.train(was_training)
