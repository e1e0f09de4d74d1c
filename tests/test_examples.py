"""The examples and the command line run end to end at a tiny budget."""

import json
import math
import subprocess
import sys

from conftest import load_script


def test_moons_example_writes_plots_and_metrics(tmp_path, capsys):
    moons = load_script("examples", "moons")
    args = [
        "--train-size",
        "512",
        "--test-size",
        "256",
        "--flow-steps",
        "2",
        "--hidden",
        "16",
        "--batch-size",
        "64",
        "--prior",
        "mixture",
        "--lr",
        "5e-3",
    ]
    assert moons.main(args + ["--out", str(tmp_path / "untrained"), "--steps", "0"]) == 0
    untrained = json.loads((tmp_path / "untrained" / "metrics.json").read_text())
    assert moons.main(args + ["--out", str(tmp_path), "--steps", "30"]) == 0
    for name in ("moons_density.png", "moons_samples.png", "moons_layers.png"):
        assert (tmp_path / name).stat().st_size > 10_000, name
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert math.isfinite(metrics["test_nll"]) and metrics["steps"] == 30
    # Measured: about 2.7 nats untrained, 2.0 after 30 steps.
    assert metrics["test_nll"] < untrained["test_nll"] - 0.3
    assert "test NLL" in capsys.readouterr().out
    assert metrics["gap_nats"] == metrics["test_nll"] - metrics["true_nll"]


def test_python_m_pyro_glow_prints_help():
    result = subprocess.run(
        [sys.executable, "-m", "pyro_glow"], capture_output=True, text=True, check=True
    )
    assert "pyro-glow" in result.stdout and "usage" in result.stdout
    version = subprocess.run(
        [sys.executable, "-m", "pyro_glow", "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.startswith("pyro-glow ")


def test_image_subset_copies_the_first_files_of_each_class(tmp_path):
    subset = load_script("benchmarks", "image_subset")
    for split, count in (("train", 5), ("test", 3)):
        for label in ("cat", "dog"):
            folder = tmp_path / "src" / split / label
            folder.mkdir(parents=True)
            for index in range(count):
                (folder / f"{index}.jpg").write_bytes(bytes([index]))
    dest = tmp_path / "dest"
    assert subset.main([str(tmp_path / "src"), str(dest), "--train-per-class", "2"]) == 0
    assert sorted(p.name for p in (dest / "train" / "cat").iterdir()) == ["0.jpg", "1.jpg"]
    assert len(list((dest / "test" / "dog").iterdir())) == 3
    assert (dest / "train" / "dog" / "1.jpg").read_bytes() == bytes([1])
