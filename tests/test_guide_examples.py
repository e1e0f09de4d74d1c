"""The guide examples and the exact-KL benchmark run end to end at a tiny budget."""

import json
import math

import pytest
import torch
from conftest import load_script


def test_bayes_logreg_compares_three_guides(tmp_path, capsys):
    example = load_script("examples", "bayes_logreg")
    path = tmp_path / "logreg.json"
    args = ["--steps", "30", "--eval-particles", "50", "--draws", "50", "--flow-steps", "1"]
    assert example.main(args + ["--hidden", "8", "--json", str(path)]) == 0
    results = {r["guide"]: r for r in json.loads(path.read_text())["results"]}
    assert sorted(results) == sorted(example.GUIDES)
    assert all(math.isfinite(r["elbo"]) and r["test_lpd"] < 0 for r in results.values())
    # Measured (seed 0, 30 steps): -0.33 nats per point, 87% accuracy (chance: -0.69, 63%).
    assert results["pyro-glow"]["test_lpd"] > math.log(0.5)
    assert results["pyro-glow"]["test_accuracy"] > 0.8
    assert "test log predictive" in capsys.readouterr().out


def test_distillation_reports_kl_and_speed(tmp_path):
    example = load_script("examples", "distillation")
    tiny = [
        "--train-size", "500", "--test-size", "200", "--teacher-steps", "30",
        "--teacher-flow-steps", "2", "--teacher-hidden", "16", "--batch-size", "128",
        "--student-steps", "20", "--student-flow-steps", "2", "--student-hidden", "8",
        "--particles", "16", "--eval", "2000", "--warm-start", "20",
    ]  # fmt: skip
    for student in example.STUDENTS:
        path = tmp_path / f"{student}.json"
        assert example.main(tiny + ["--student", student, "--json", str(path)]) == 0
        result = json.loads(path.read_text())["results"]
        # Both KLs are exact-density Monte Carlo estimates of non-negative quantities.
        assert 0 < result["kl_student_teacher"] < 5
        assert -0.05 < result["kl_teacher_student"] < 5
        assert result["student_samples_per_s"] > 0 and result["teacher_samples_per_s"] > 0
        assert math.isfinite(result["student_test_nll"])
    assert example.main(tiny + ["--figure", str(tmp_path / "samples.png")]) == 0
    assert (tmp_path / "samples.png").stat().st_size > 5_000


def test_distillation_warm_start_covers_the_teacher(tmp_path):
    """The forward-KL warm start fits the student to teacher samples: KL(teacher || student)
    falls well below that of the untrained student."""
    example = load_script("examples", "distillation")
    tiny = [
        "--train-size", "500", "--test-size", "200", "--teacher-steps", "100",
        "--teacher-flow-steps", "2", "--teacher-hidden", "16", "--batch-size", "256",
        "--student-steps", "0", "--student-flow-steps", "2", "--student-hidden", "16",
        "--eval", "4000", "--student", "glow",
    ]  # fmt: skip
    kl = {}
    for warm in (0, 300):
        path = tmp_path / f"warm{warm}.json"
        assert example.main(tiny + ["--warm-start", str(warm), "--json", str(path)]) == 0
        kl[warm] = json.loads(path.read_text())["results"]["kl_teacher_student"]
    # Measured (seed 0): 0.66 nats untrained, 0.011 after the warm start.
    assert kl[300] < 0.5 * kl[0]


def test_vae_digits_reports_elbo_and_iwae(tmp_path):
    example = load_script("examples", "vae_digits")
    path = tmp_path / "vae.json"
    args = ["--steps", "10", "--k", "10", "--hidden", "32", "--flow-steps", "2"]
    assert example.main(args + ["--flow-hidden", "16", "--json", str(path)]) == 0
    results = {r["guide"]: r for r in json.loads(path.read_text())["results"]}
    assert sorted(results) == ["flow", "gaussian"]
    for result in results.values():
        # log-mean-exp of the same draws is never below their mean.
        assert result["test_iwae"] >= result["test_elbo"]
        # An untrained decoder (logits 0) scores 64 log 0.5 = -44.4 nats before the KL term.
        assert -44.4 < result["test_elbo"] < 0
    assert results["flow"]["parameters"] > results["gaussian"]["parameters"]


def test_vae_flow_guide_has_a_normalised_density():
    example = load_script("examples", "vae_digits")
    torch.manual_seed(0)
    guide = example.AmortizedGuide(latent=2, hidden=8, flow_steps=2, context=3, flow_hidden=8)
    for parameter in guide.parameters():
        parameter.data.add_(0.3 * torch.randn_like(parameter))
    x = (torch.rand(1, example.PIXELS) > 0.5).float()
    axis = torch.linspace(-12, 12, 600)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 1, 2)
    with torch.no_grad():
        density = guide.distribution(x).log_prob(grid).exp()
        draws = guide.distribution(x).sample((20000,))
    mass = density.sum().item() * (axis[1] - axis[0]).item() ** 2
    # The box's mass by quadrature against the share of draws in it (some mass of a randomly
    # perturbed flow lies outside): a normalised density whose samples follow it.
    inside = (draws.abs() <= 12).all(-1).float().mean().item()
    assert inside > 0.5
    assert mass == pytest.approx(inside, abs=0.01)


def test_kl_benchmark_normalisers_and_a_tiny_table(tmp_path, capsys):
    bench = load_script("benchmarks", "kl_targets")
    # U2-U4 are Gaussian in z2 given z1 (U3, U4: two-component mixtures) times the N(0, 2^2)
    # envelope in z1: log Z = log(2 pi * 2 * (sum of the component widths)).
    for name, widths in (("U2", 0.4), ("U3", 0.7), ("U4", 0.75)):
        assert bench.grid_log_z(name, 400) == pytest.approx(math.log(4 * math.pi * widths), 1e-6)
    log_z, error = bench.log_normaliser("U1")
    assert error < 1e-6 and 1.8 < log_z < 1.95
    path = tmp_path / "kl.json"
    args = ["--targets", "U2", "--guides", "pyro-glow", "AutoNormal", "--steps", "5"]
    args += ["--particles", "8", "--lrs", "1e-2", "--eval", "20000", "--jobs", "1"]
    args += ["--layers", "2", "--hidden", "8", "--json", str(path)]
    assert bench.main(args + ["--figure", str(tmp_path / "kl.png")]) == 0
    runs = json.loads(path.read_text())["runs"]
    assert len(runs) == 2 and all(r["kl"] > -3 * r["kl_se"] for r in runs)
    assert (tmp_path / "kl.png").stat().st_size > 10_000
    assert "| U2 |" in capsys.readouterr().out
