"""Figures: every file is written as a readable PNG, the layer figure has one panel per flow
step, latent interpolations end on their images, and ``plot_run`` restores the flow's mode."""

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import perturb_

from pyro_glow import Flow, plots
from pyro_glow.training import TrainConfig, TrainingData, build_flow

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MOONS_STEPS = 2
IMAGE_SHAPE = (3, 8, 8)


def assert_png(path: Path) -> None:
    """``path`` is a PNG of non-trivial size (an empty or blank figure is a few kB)."""
    assert path.is_file(), f"{path} was not written"
    assert path.read_bytes()[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert path.stat().st_size > 5000, f"{path} is only {path.stat().st_size} bytes"


def panel_count(fig) -> int:
    """Axes of a figure that are panels (not colour bars)."""
    return sum(1 for ax in fig.axes if ax.get_label() != "<colorbar>")


def moons_flow_and_data() -> tuple:
    """A small, initialised, non-trivial 2-D flow and fake moons-like data."""
    flow = build_flow(TrainConfig(data="moons", flow_steps=MOONS_STEPS, hidden=8).resolved(), (2,))
    train = torch.randn(300, 2) * torch.tensor([1.0, 0.5]) + torch.tensor([0.5, 0.25])
    test = torch.randn(200, 2) * torch.tensor([1.0, 0.5]) + torch.tensor([0.5, 0.25])
    units = flow.transform.parts[-1]
    with torch.no_grad():
        units.loc.copy_(train.mean(0))
        units.log_scale.copy_(train.std(0).log())
        flow.log_prob(train)  # ActNorm's data-dependent initialisation
    perturb_(flow, 0.1)
    return flow.eval(), TrainingData((2,), train, test, 8)


def image_flow_and_data(n_bits: int = 5) -> tuple:
    """A small, initialised, non-trivial image flow and fake uint8 images."""
    config = TrainConfig(data="folder:x", levels=2, flow_steps=1, hidden=8).resolved()
    flow = build_flow(config, IMAGE_SHAPE)
    train = torch.randint(0, 256, (16, *IMAGE_SHAPE), dtype=torch.uint8)
    test = torch.randint(0, 256, (10, *IMAGE_SHAPE), dtype=torch.uint8)
    with torch.no_grad():
        flow.log_prob(plots.pixels_to_units(train, n_bits))
    perturb_(flow, 0.03)
    return flow.eval(), TrainingData(IMAGE_SHAPE, train, test, n_bits)


def write_log(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


# ----------------------------------------------------------------------------------------
# save_samples


def test_save_samples_pt_round_trips(tmp_path):
    samples = torch.randn(7, 2)
    plots.save_samples(samples, tmp_path / "s.pt")
    assert torch.equal(torch.load(tmp_path / "s.pt"), samples)


@pytest.mark.parametrize(
    "samples",
    [torch.randn(500, 2), torch.rand(16, 3, 8, 8), torch.rand(9, 1, 8, 8)],
    ids=["vectors", "rgb", "grey"],
)
def test_save_samples_png(tmp_path, samples):
    plots.save_samples(samples, tmp_path / "sub" / "s.png")
    assert_png(tmp_path / "sub" / "s.png")


def test_save_samples_rejects_unknown_suffix_and_shapes(tmp_path):
    with pytest.raises(ValueError, match=r"\.jpg"):
        plots.save_samples(torch.randn(4, 2), tmp_path / "s.jpg")
    for shape in [(4, 3), (4,), (4, 2, 8, 8), (0, 3, 8, 8), (2, 3, 4, 4, 4)]:
        with pytest.raises(ValueError, match=str(list(shape)).replace("[", r"\[")):
            plots.save_samples(torch.rand(shape), tmp_path / "s.png")
    with pytest.raises(TypeError):
        plots.save_samples([[0.0, 1.0]], tmp_path / "s.png")
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------------------
# Two-dimensional flows


def test_moons_figures_writes_every_figure(tmp_path):
    flow, data = moons_flow_and_data()
    written = plots.moons_figures(flow, data, tmp_path / "run")
    names = ["moons_data.png", "moons_samples.png", "moons_density.png", "moons_layers.png"]
    assert [p.name for p in written] == names
    for path in written:
        assert_png(path)


def test_layer_stages_walk_the_normalizing_direction_step_by_step():
    flow, data = moons_flow_and_data()
    stages = plots.layer_stages(flow, data.test)
    names = [name for name, _ in stages]
    assert names == ["data", "standardised"] + [f"step {k + 1}" for k in range(MOONS_STEPS)]
    assert torch.equal(stages[0][1], data.test)
    units = flow.transform.parts[-1]
    torch.testing.assert_close(stages[1][1], (data.test - units.loc) / units.log_scale.exp())
    with torch.no_grad():
        latent = flow.transform.inv(data.test)
    torch.testing.assert_close(stages[-1][1], latent, atol=1e-5, rtol=1e-5)
    assert all(h.shape == data.test.shape for _, h in stages)


def test_layers_figure_has_a_panel_per_stage_and_the_prior():
    flow, data = moons_flow_and_data()
    fig = plots.layers_figure(flow, data.test)
    # data, standardised, one per flow step (the last is the latent), prior samples
    assert panel_count(fig) == MOONS_STEPS + 3
    titles = [ax.get_title() for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert titles[-1] == "Samples from the prior" and titles[-2].startswith("Latent")
    plots.plt.close(fig)


def test_layer_stages_rejects_flows_not_made_of_glow_steps():
    flow, data = moons_flow_and_data()
    broken = Flow(flow.prior, list(flow.transform.parts[1:]))  # one part of a step dropped
    with pytest.raises(ValueError, match="steps of 3 parts"):
        plots.layer_stages(broken, data.test)


# ----------------------------------------------------------------------------------------
# Image flows


def test_image_figures_writes_every_figure(tmp_path):
    flow, data = image_flow_and_data()
    records = [{"step": s, "loss": 1.0, "bits_per_dim": 6.0 - s / 100} for s in range(10, 301, 10)]
    records.append({"step": 310, "loss": math.nan, "bits_per_dim": math.nan})  # skipped step
    log = write_log(tmp_path / "metrics.jsonl", records)
    with open(log, "a") as f:
        f.write('{"step": 320, "lo')  # a line cut short by a killed run
    written = plots.image_figures(flow, data, tmp_path / "run", log, n_samples=16)
    names = [f"samples_T{t}.png" for t in ("0.0", "0.5", "0.7", "1.0")]
    assert [p.name for p in written] == [*names, "bits_per_dim.png", "interpolation.png"]
    for path in written:
        assert_png(path)


@pytest.mark.parametrize("log", ["missing", "none", "no_bits"])
def test_image_figures_skip_the_curve_without_records(tmp_path, log):
    flow, data = image_flow_and_data()
    path = {
        "missing": tmp_path / "absent.jsonl",
        "none": None,
        "no_bits": write_log(tmp_path / "metrics.jsonl", [{"step": 10, "loss": 1.0}]),
    }[log]
    written = plots.image_figures(flow, data, tmp_path / "run", path, n_samples=4)
    assert "bits_per_dim.png" not in [p.name for p in written]
    assert len(written) == 5 and not (tmp_path / "run" / "bits_per_dim.png").exists()


def test_interpolate_latents_ends_exactly_on_both_latents():
    z_a, z_b = torch.randn(3, 4, 4), torch.randn(3, 4, 4)
    path = plots.interpolate_latents(z_a, z_b, 8)
    assert path.shape == (8, 3, 4, 4)
    assert torch.equal(path[0], z_a) and torch.equal(path[-1], z_b)
    # On orthonormal ends the path is a great circle: constant norm, monotone angle.
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    circle = plots.interpolate_latents(e1, e2, 5)
    torch.testing.assert_close(circle.norm(dim=1), torch.ones(5))
    assert (circle[1:, 0] < circle[:-1, 0]).all() and (circle[1:, 1] > circle[:-1, 1]).all()


def test_interpolate_latents_rejects_bad_arguments():
    with pytest.raises(ValueError, match="steps"):
        plots.interpolate_latents(torch.zeros(2), torch.zeros(2), 1)
    with pytest.raises(ValueError, match="same shape"):
        plots.interpolate_latents(torch.zeros(2), torch.zeros(3), 4)


def test_interpolation_images_start_and_end_on_the_test_images():
    flow, data = image_flow_and_data(n_bits=5)
    images = plots.interpolation_images(flow, data.test, data.n_bits, pairs=3, steps=6)
    assert images.shape == (3, 6, *IMAGE_SHAPE)
    y = plots.pixels_to_units(data.test[:6], data.n_bits)
    torch.testing.assert_close(images[:, 0], y[0::2], atol=1e-4, rtol=0)
    torch.testing.assert_close(images[:, -1], y[1::2], atol=1e-4, rtol=0)
    # ... and the middle of the path is something else than either end.
    assert (images[:, 3] - y[0::2]).abs().max() > 1e-2


def test_pixels_to_units_takes_bin_centres():
    pixels = torch.tensor([0, 7, 8, 255], dtype=torch.uint8)
    units = plots.pixels_to_units(pixels, 5)
    torch.testing.assert_close(units, (torch.tensor([0.0, 0.0, 1.0, 31.0]) + 0.5) / 32)


# ----------------------------------------------------------------------------------------
# plot_run


@pytest.mark.parametrize("kind", ["moons", "image"])
def test_plot_run_dispatches_in_eval_mode_and_restores_train_mode(tmp_path, monkeypatch, kind):
    flow, data = moons_flow_and_data() if kind == "moons" else image_flow_and_data()
    flow.train()
    seen = {}

    def fake(name):
        def figures(flow_arg, data_arg, out, *rest):
            seen.update(
                name=name,
                training=flow_arg.training,
                grad=torch.is_grad_enabled(),
                args=(flow_arg, data_arg, out, *rest),
            )
            return [out / "figure.png"]

        return figures

    monkeypatch.setattr(plots, "moons_figures", fake("moons"))
    monkeypatch.setattr(plots, "image_figures", fake("image"))
    trainer = SimpleNamespace(flow=flow, data=data, out=tmp_path)
    assert plots.plot_run(trainer) == [tmp_path / "figure.png"]
    assert seen["name"] == kind and seen["training"] is False and seen["grad"] is False
    expected = (flow, data, tmp_path) + ((tmp_path / "metrics.jsonl",) if kind == "image" else ())
    assert len(seen["args"]) == len(expected)
    assert all(a is b or a == b for a, b in zip(seen["args"], expected, strict=True))
    assert flow.training and all(m.training for m in flow.modules())


def test_plot_run_restores_the_mode_when_drawing_fails(tmp_path, monkeypatch):
    flow, data = moons_flow_and_data()
    flow.train()

    def broken(*args):
        raise RuntimeError("drawing failed")

    monkeypatch.setattr(plots, "moons_figures", broken)
    with pytest.raises(RuntimeError, match="drawing failed"):
        plots.plot_run(SimpleNamespace(flow=flow, data=data, out=tmp_path))
    assert flow.training


def test_plot_run_draws_a_real_image_run(tmp_path):
    flow, data = image_flow_and_data()
    write_log(tmp_path / "metrics.jsonl", [{"step": s, "bits_per_dim": 5.0} for s in (1, 2)])
    written = plots.plot_run(SimpleNamespace(flow=flow.train(), data=data, out=tmp_path))
    assert len(written) == 6 and all(p.parent == tmp_path for p in written)
    assert flow.training


def test_plot_run_draws_only_on_the_main_process(tmp_path):
    flow, data = moons_flow_and_data()
    trainer = SimpleNamespace(flow=flow, data=data, out=tmp_path, is_main=False)
    assert plots.plot_run(trainer) == [] and not list(tmp_path.iterdir())
