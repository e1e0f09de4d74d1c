"""The course examples run end to end at a tiny budget."""

import json
import math

from conftest import load_script


def test_warmup_affine_learns_the_sample_mean_and_std(tmp_path, capsys):
    warmup = load_script("examples", "warmup_affine")
    out = tmp_path / "warmup.json"
    args = ["--steps", "150", "--samples", "400", "--lr", "0.1", "--json", str(out)]
    assert warmup.main(args) == 0
    values = json.loads(out.read_text())
    # Maximum likelihood of N(b, e^s) is the sample mean and (1/n) standard deviation.
    assert abs(values["learned_mu"] - values["sample_mean"]) < 0.02
    assert abs(values["learned_sigma"] - values["sample_std"]) < 0.02
    assert abs(values["learned_mu"] - 2.0) < 0.1 and abs(values["learned_sigma"] - 0.5) < 0.1
    printed = capsys.readouterr().out
    assert "learned" in printed and "sigma" in printed


def test_piecewise_1d_writes_the_figure_and_improves_on_the_identity(tmp_path, capsys):
    piecewise = load_script("examples", "piecewise_1d")
    args = ["--train-size", "1000", "--test-size", "1000", "--bins", "16", "--batch-size", "256"]
    assert piecewise.main(args + ["--out", str(tmp_path / "untrained"), "--steps", "0"]) == 0
    untrained = json.loads((tmp_path / "untrained" / "metrics.json").read_text())
    assert piecewise.main(args + ["--out", str(tmp_path), "--steps", "150"]) == 0
    assert (tmp_path / "piecewise_1d.png").stat().st_size > 10_000
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert math.isfinite(metrics["test_nll"]) and metrics["steps"] == 150
    # Measured: 1.81 nats untrained (the identity: a standard normal), about 1.45 after 150
    # steps; the true density's NLL is 1.37.
    assert metrics["test_nll"] < untrained["test_nll"] - 0.2
    assert metrics["test_nll"] > metrics["true_nll"] - 0.05
    assert "test NLL" in capsys.readouterr().out


def test_flow_families_writes_the_comparison_table(tmp_path):
    families = load_script("examples", "flow_families")
    args = ["--out", str(tmp_path), "--steps", "3", "--train-size", "256", "--test-size", "64"]
    assert families.main(args + ["--batch-size", "32", "--repeats", "1", "--hidden", "8"]) == 0
    report = json.loads((tmp_path / "flow_families.json").read_text())
    rows = {row["family"].split(" (")[0]: row for row in report["rows"]}
    assert set(rows) == {
        "Glow",
        "NICE",
        "RealNVP",
        "Planar",
        "Radial",
        "MAF",
        "IAF",
        "SOS",
        "Spline coupling",
    }
    for name, row in rows.items():
        assert row["parameters"] > 0 and row["train_step_ms"] > 0 and row["log_prob_ms"] > 0, name
        assert row["diverged"] or math.isfinite(row["test_nll"]), name
    for name in ("Planar", "Radial", "SOS"):
        assert rows[name]["sample_ms"] is None, "no inverse: sampling must be reported n/a"
    assert rows["Glow"]["sample_ms"] > 0 and rows["IAF"]["sample_ms"] > 0
    table = (tmp_path / "flow_families.md").read_text()
    assert table.count("\n") == len(rows) + 3 and "n/a" in table and "true density" in table
