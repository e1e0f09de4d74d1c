"""A catalogue of bad inputs: each raises ValueError or TypeError naming the problem.

Every case belongs to one row of the reliability issue's list (``ROWS``); the table in
docs/reliability.md is rendered from ``CASES`` and a test fails when the two differ.
Regenerate it with ``.venv/bin/python tests/test_bad_input.py --write-docs``.
"""

import argparse
import dataclasses
import functools
import pickle
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from pyro_glow import (
    ActNorm,
    AffineCoupling,
    InvertibleConv1x1,
    Split,
    Squeeze,
    Unsqueeze,
    glow,
    load_checkpoint,
)
from pyro_glow.metrics import dequantize
from pyro_glow.priors import GaussianMixture, make_prior
from pyro_glow.training import TrainConfig, Trainer, build_flow

DOCS = Path(__file__).resolve().parent.parent / "docs" / "reliability.md"
TABLE_START = "<!-- bad-input-table:start -->"
TABLE_END = "<!-- bad-input-table:end -->"

# The rows of the issue's list, in its order, and the label each gets in the docs.
ROWS = {
    "rank": "wrong rank",
    "channels": "wrong channel count",
    "divisible": "H or W not divisible by 2^levels",
    "dtype": "integer (or other) dtype, not a tensor",
    "nonfinite": "NaN or Inf values",
    "range": "pixel values outside the expected range",
    "empty": "empty batch",
    "device": "model and data on different devices",
    "config": "invalid configuration",
    "corrupt": "truncated or corrupted checkpoint",
    "foreign": "checkpoint of another configuration",
    "sampling": "sampling arguments",
}


@dataclasses.dataclass(frozen=True)
class Case:
    row: str
    name: str
    description: str
    call: object  # callable(tmp: Path)
    error: type
    message: str  # a regular expression the message must match


def image_flow():
    return glow((3, 8, 8), levels=2, steps=1, hidden=8)


def vector_flow():
    return glow((2,), steps=1, hidden=8)


def vec(*shape, dtype=torch.float32):
    return torch.randn(*shape, dtype=dtype)


def with_value(x, index, value):
    x = x.clone()
    x[index] = value
    return x


IMAGE_3CH = torch.linspace(-1, 1, 2 * 3 * 8 * 8).reshape(2, 3, 8, 8)
IMAGE_4CH = torch.linspace(-1, 1, 2 * 4 * 8 * 8).reshape(2, 4, 8, 8)
UINT8_IMAGE = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
PIXELS_0_255 = torch.linspace(0, 255, 2 * 3 * 4 * 4).reshape(2, 3, 4, 4)


def trained_image_flow():
    """The flow ``pyro-glow train`` builds for 3x4x4 images: it models pixels in [0, 1)."""
    config = TrainConfig(data="folder:images", levels=1, flow_steps=1, hidden=4).resolved()
    return build_flow(config, (3, 4, 4))


TINY_RUN = dict(data="moons", steps=1, flow_steps=2, hidden=8, train_size=64, test_size=16)


@functools.cache
def checkpoint_bytes() -> bytes:
    """A real checkpoint of a one-step tiny two-moons run (made once per test process)."""
    with tempfile.TemporaryDirectory() as folder:
        Trainer(TrainConfig(**TINY_RUN, out=folder)).run()
        return (Path(folder) / "checkpoint.pt").read_bytes()


def saved_checkpoint(tmp: Path, edit=None, cut: float | None = None) -> Path:
    """``tmp/run/checkpoint.pt``: the tiny checkpoint, its state edited or its bytes cut."""
    path = tmp / "run" / "checkpoint.pt"
    path.parent.mkdir(exist_ok=True)
    data = checkpoint_bytes()
    if cut is not None:
        data = data[: int(len(data) * cut)]
    path.write_bytes(data)
    if edit is not None:
        state = torch.load(path, weights_only=True)
        edit(state)
        torch.save(state, path)
    return path


def set_config(**changes):
    def edit(state):
        state["config"].update(changes)

    return edit


def resume_with(tmp: Path, **changes):
    saved_checkpoint(tmp)
    config = TrainConfig(**{**TINY_RUN, **changes, "out": str(tmp / "run")})
    return Trainer(config, resume=True)


def write(tmp: Path, data: bytes) -> Path:
    path = tmp / "file.pt"
    path.write_bytes(data)
    return path


def case(row, name, description, call, error, message):
    assert row in ROWS, row
    return Case(row, name, description, call, error, message)


CASES = [
    # wrong rank
    case("rank", "flow-image-rank-2", "an `[8, 8]` image to a `[3, 8, 8]` flow",
         lambda tmp: image_flow().log_prob(vec(8, 8)), ValueError, r"\[\.\.\., C, H, W\]"),
    case("rank", "flow-vector-rank-0", "a scalar to a vector flow",
         lambda tmp: vector_flow().log_prob(torch.tensor(1.0)), ValueError, r"\[\.\.\., D\]"),
    case("rank", "actnorm-few-dims", "`[3, 8]` to an image ActNorm",
         lambda tmp: ActNorm(3)(vec(3, 8)), ValueError, r"\[\.\.\., C, H, W\]"),
    case("rank", "coupling-few-dims", "`[4, 8]` to an image coupling",
         lambda tmp: AffineCoupling(4, 8)(vec(4, 8)), ValueError, r"\[\.\.\., C, H, W\]"),
    case("rank", "squeeze-vector", "a vector to Squeeze",
         lambda tmp: Squeeze()(vec(8)), ValueError, r"\[\.\.\., C, H, W\]"),
    case("rank", "glow-rank-2", "`glow((3, 8))`",
         lambda tmp: glow((3, 8)), ValueError, r"\(C, H, W\)"),
    # wrong channel count or event shape
    case("channels", "actnorm-channels", "4 channels to `ActNorm(3)`",
         lambda tmp: ActNorm(3)(IMAGE_4CH), ValueError, "4 channels.*expected 3"),
    case("channels", "actnorm-inv-channels", "4 channels to `ActNorm(3).inv`",
         lambda tmp: ActNorm(3).inv(IMAGE_4CH), ValueError, "channels"),
    case("channels", "actnorm-vector", "3 coordinates to a 2-d ActNorm",
         lambda tmp: ActNorm(2, event_dim=1)(vec(5, 3)), ValueError, "channels"),
    case("channels", "conv1x1-channels", "4 channels to `InvertibleConv1x1(3)`",
         lambda tmp: InvertibleConv1x1(3)(IMAGE_4CH), ValueError, "4 channels"),
    case("channels", "conv1x1-inv-channels", "4 channels to its inverse",
         lambda tmp: InvertibleConv1x1(3).inv(IMAGE_4CH), ValueError, "4 chan"),
    case("channels", "coupling-channels", "3 channels to `AffineCoupling(4)`",
         lambda tmp: AffineCoupling(4, 8)(IMAGE_3CH), ValueError, "3 channels"),
    case("channels", "coupling-vector", "3 coordinates to a 4-d vector coupling",
         lambda tmp: AffineCoupling(4, 8, 1)(vec(5, 3)), ValueError, "channels"),
    case("channels", "split-channels", "3 channels to `Split(4)`",
         lambda tmp: Split(4)(IMAGE_3CH), ValueError, "3 channels.*expected 4"),
    case("channels", "unsqueeze-channels", "3 channels to Unsqueeze",
         lambda tmp: Unsqueeze()(vec(2, 3, 4, 4)), ValueError, "multiple of 4"),
    case("channels", "flow-channels", "4 channels to a 3-channel flow",
         lambda tmp: image_flow().log_prob(IMAGE_4CH), ValueError, r"shape \[\.\.\., 3, 8, 8\]"),
    case("channels", "flow-vector-size", "3 coordinates to a 2-d flow",
         lambda tmp: vector_flow().log_prob(vec(5, 3)), ValueError, r"shape \[\.\.\., 2\]"),
    # H or W not divisible by 2^levels
    case("divisible", "glow-height", "`glow((3, 12, 12), levels=3)`",
         lambda tmp: glow((3, 12, 12), levels=3), ValueError, "divisible by 8"),
    case("divisible", "glow-width", "`glow((3, 8, 12), levels=3)`",
         lambda tmp: glow((3, 8, 12), levels=3), ValueError, "divisible by 8"),
    case("divisible", "flow-image-size", "16x16 images to an 8x8 flow",
         lambda tmp: image_flow().log_prob(vec(2, 3, 16, 16)), ValueError, r"\[\.\.\., 3, 8, 8\]"),
    case("divisible", "flow-image-6x6", "6x6 images to an 8x8 flow of 2 levels",
         lambda tmp: image_flow().log_prob(vec(2, 3, 6, 6)), ValueError, r"\[\.\.\., 3, 8, 8\]"),
    case("divisible", "squeeze-odd-height", "a 7x8 image to Squeeze",
         lambda tmp: Squeeze()(vec(2, 3, 7, 8)), ValueError, "odd height"),
    case("divisible", "squeeze-odd-width", "an 8x5 image to Squeeze",
         lambda tmp: Squeeze()(vec(2, 3, 8, 5)), ValueError, "odd height or width"),
    case("divisible", "unsqueeze-inv-odd", "a 5x5 image to `Unsqueeze().inv`",
         lambda tmp: Unsqueeze().inv(vec(2, 3, 5, 5)), ValueError, "odd height or width"),
    # dtype and type
    case("dtype", "flow-uint8", "uint8 images to a flow",
         lambda tmp: image_flow().log_prob(UINT8_IMAGE), TypeError, "dtype torch.uint8"),
    case("dtype", "layer-int64", "int64 images to ActNorm",
         lambda tmp: ActNorm(3)(UINT8_IMAGE.long()), TypeError, "dtype torch.int64"),
    case("dtype", "flow-bool", "a bool tensor to a flow",
         lambda tmp: vector_flow().log_prob(torch.zeros(3, 2, dtype=torch.bool)), TypeError,
         "dtype torch.bool"),
    case("dtype", "flow-float64-data", "float64 data to a float32 flow",
         lambda tmp: vector_flow().log_prob(vec(3, 2, dtype=torch.float64)), TypeError,
         "dtype torch.float64 but the model's parameters are torch.float32"),
    case("dtype", "flow-float64-model", "float32 data to a float64 flow",
         lambda tmp: vector_flow().double().log_prob(vec(3, 2)), TypeError,
         "dtype torch.float32 but the model's parameters are torch.float64"),
    case("dtype", "coupling-float16", "float16 images to a float32 coupling",
         lambda tmp: AffineCoupling(4, 8)(vec(2, 4, 4, 4).half()), TypeError, "torch.float16"),
    case("dtype", "flow-numpy", "a numpy array to a flow",
         lambda tmp: vector_flow().log_prob(np.zeros((5, 2))), TypeError, "torch.Tensor"),
    case("dtype", "flow-list", "a list to a flow",
         lambda tmp: vector_flow().log_prob([[0.0, 0.0]]), TypeError, "torch.Tensor"),
    case("dtype", "layer-list", "a list to a layer",
         lambda tmp: InvertibleConv1x1(2, 1)([0.0, 0.0]), TypeError, "torch.Tensor"),
    # NaN or Inf
    case("nonfinite", "flow-nan", "one NaN in a vector batch",
         lambda tmp: vector_flow().log_prob(with_value(vec(4, 2), (1, 0), torch.nan)),
         ValueError, "1 NaN or Inf value"),
    case("nonfinite", "flow-inf", "one +Inf in an image batch",
         lambda tmp: image_flow().log_prob(with_value(IMAGE_3CH, (0, 1, 2, 3), torch.inf)),
         ValueError, "1 NaN or Inf value"),
    case("nonfinite", "flow-minus-inf", "-Inf in a trained image flow's data",
         lambda tmp: trained_image_flow().log_prob(
             with_value(torch.rand(2, 3, 4, 4), (1, 0, 0, 0), -torch.inf)),
         ValueError, "NaN or Inf"),
    case("nonfinite", "actnorm-init-nan", "NaN in the batch that initialises ActNorm",
         lambda tmp: ActNorm(3).inv(with_value(IMAGE_3CH, (0, 0, 0, 0), torch.nan)),
         ValueError, "first batch.*NaN or Inf.*stays uninitialised"),
    case("nonfinite", "actnorm-init-inf", "Inf in the batch that initialises a vector ActNorm",
         lambda tmp: ActNorm(2, event_dim=1)(with_value(vec(8, 2), (3, 1), torch.inf)),
         ValueError, "NaN or Inf"),
    # pixel values outside the expected range
    case("range", "trained-flow-0-255", "pixels 0..255 (not divided) to a trained image flow",
         lambda tmp: trained_image_flow().log_prob(PIXELS_0_255), ValueError,
         r"outside the range \[0, 1\].*dequantize"),
    case("range", "trained-flow-negative", "centred pixels in [-0.5, 0.5] to a trained flow",
         lambda tmp: trained_image_flow().log_prob(torch.rand(2, 3, 4, 4) - 0.5), ValueError,
         r"outside the range \[0, 1\]"),
    case("range", "dequantize-above-255", "int16 pixels up to 300 to `dequantize`",
         lambda tmp: dequantize(torch.tensor([0, 300], dtype=torch.int16)), ValueError,
         r"values in \[0, 255\]"),
    case("range", "dequantize-negative", "negative int pixels to `dequantize`",
         lambda tmp: dequantize(torch.tensor([-1, 3])), ValueError, r"values in \[0, 255\]"),
    case("range", "dequantize-float", "float pixels in [0, 1] to `dequantize`",
         lambda tmp: dequantize(torch.rand(3)), TypeError, "uint8"),
    case("range", "dequantize-n-bits", "`dequantize(x, n_bits=9)`",
         lambda tmp: dequantize(UINT8_IMAGE, n_bits=9), ValueError, "n_bits"),
    # empty batch
    case("empty", "flow-empty-vector", "`[0, 2]` to a vector flow",
         lambda tmp: vector_flow().log_prob(vec(0, 2)), ValueError, "empty batch"),
    case("empty", "flow-empty-image", "`[0, 3, 8, 8]` to an image flow",
         lambda tmp: image_flow().log_prob(vec(0, 3, 8, 8)), ValueError, "empty batch"),
    case("empty", "trainer-batch-0", "`TrainConfig(batch_size=0)`",
         lambda tmp: Trainer(TrainConfig(**TINY_RUN, batch_size=0, out=str(tmp))), ValueError,
         "batch_size must be >= 1"),
    # model and data on different devices
    case("device", "flow-meta", "CPU data to a flow on the `meta` device",
         lambda tmp: vector_flow().to("meta").log_prob(vec(3, 2)), ValueError,
         "data is on device cpu but the model is on meta"),
    case("device", "image-flow-meta", "CPU images to an image flow on `meta`",
         lambda tmp: image_flow().to("meta").log_prob(IMAGE_3CH), ValueError, "device cpu"),
    case("device", "actnorm-meta", "CPU data to an ActNorm on `meta`",
         lambda tmp: ActNorm(3).to("meta")(IMAGE_3CH), ValueError, "device cpu.*on meta"),
    case("device", "coupling-meta", "CPU data to a coupling on `meta`",
         lambda tmp: AffineCoupling(4, 8).to("meta").inv(IMAGE_4CH), ValueError, "on meta"),
    case("device", "conv1x1-meta", "`meta` data to a CPU InvertibleConv1x1",
         lambda tmp: InvertibleConv1x1(3)(IMAGE_3CH.to("meta")), ValueError, "device meta"),
    case("device", "trainer-device", "`TrainConfig(device='tpu')`",
         lambda tmp: Trainer(TrainConfig(**TINY_RUN, device="tpu", out=str(tmp))), ValueError,
         "device must be auto, cpu or cuda"),
    # invalid configuration
    case("config", "glow-levels-0", "`glow((3, 8, 8), levels=0)`",
         lambda tmp: glow((3, 8, 8), levels=0), ValueError, "levels"),
    case("config", "glow-vector-levels-0", "`glow((2,), levels=0)` (unused, still checked)",
         lambda tmp: glow((2,), levels=0), ValueError, "levels must be a positive int"),
    case("config", "glow-steps-0", "`glow((2,), steps=0)`",
         lambda tmp: glow((2,), steps=0), ValueError, "steps"),
    case("config", "glow-hidden-0", "`glow((2,), hidden=0)`",
         lambda tmp: glow((2,), hidden=0), ValueError, "hidden"),
    case("config", "glow-steps-float", "`glow((2,), steps=2.5)`",
         lambda tmp: glow((2,), steps=2.5), ValueError, "steps must be a positive int"),
    case("config", "glow-components-0", "`glow((2,), components=0)` with the normal prior",
         lambda tmp: glow((2,), components=0), ValueError, "components must be a positive int"),
    case("config", "mixture-components-0", "`GaussianMixture(2, components=0)`",
         lambda tmp: GaussianMixture(2, components=0), ValueError, "components"),
    case("config", "glow-prior", "`glow((2,), prior='bogus')`",
         lambda tmp: glow((2,), prior="bogus"), ValueError, "unknown prior 'bogus'"),
    case("config", "make-prior", "`make_prior('laplace', 2)`",
         lambda tmp: make_prior("laplace", 2), ValueError, "unknown prior 'laplace'"),
    case("config", "glow-vector-1d", "`glow((1,))`",
         lambda tmp: glow((1,)), ValueError, "at least 2"),
    case("config", "coupling-mask", "`AffineCoupling(4, mask='diag')`",
         lambda tmp: AffineCoupling(4, mask="diag"), ValueError, "mask 'diag'"),
    case("config", "coupling-parity", "`AffineCoupling(4, parity=2)`",
         lambda tmp: AffineCoupling(4, parity=2), ValueError, "parity"),
    case("config", "coupling-hidden-0", "`AffineCoupling(4, hidden=0)`",
         lambda tmp: AffineCoupling(4, hidden=0), ValueError, "hidden must be a positive int"),
    case("config", "coupling-1-vector", "`AffineCoupling(1, 8, 1)`",
         lambda tmp: AffineCoupling(1, 8, 1), ValueError, "at least 2 features"),
    case("config", "coupling-1-channel", "`AffineCoupling(1, 8)`",
         lambda tmp: AffineCoupling(1, 8), ValueError, "at least 2 features"),
    case("config", "actnorm-event-dim", "`ActNorm(3, event_dim=2)`",
         lambda tmp: ActNorm(3, event_dim=2), ValueError, "event_dim"),
    case("config", "conv1x1-event-dim", "`InvertibleConv1x1(3, event_dim=0)`",
         lambda tmp: InvertibleConv1x1(3, event_dim=0), ValueError, "event_dim"),
    case("config", "coupling-event-dim", "`AffineCoupling(4, event_dim=2)`",
         lambda tmp: AffineCoupling(4, event_dim=2), ValueError, "event_dim"),
    case("config", "actnorm-features", "`ActNorm(0)`",
         lambda tmp: ActNorm(0), ValueError, "features"),
    case("config", "split-features", "`Split(1)`",
         lambda tmp: Split(1), ValueError, "features"),
    case("config", "trainer-flow-steps-0", "`TrainConfig(flow_steps=0)`",
         lambda tmp: Trainer(TrainConfig(**{**TINY_RUN, "flow_steps": 0}, out=str(tmp))),
         ValueError, "steps must be a positive int"),
    case("config", "trainer-lr-0", "`TrainConfig(lr=0)`",
         lambda tmp: Trainer(TrainConfig(**TINY_RUN, lr=0.0, out=str(tmp))), ValueError,
         "lr must be positive"),
    case("config", "trainer-steps-negative", "`TrainConfig(steps=-1)`",
         lambda tmp: Trainer(TrainConfig(**{**TINY_RUN, "steps": -1}, out=str(tmp))),
         ValueError, "steps must be"),
    case("config", "trainer-n-bits", "`TrainConfig(n_bits=9)`",
         lambda tmp: Trainer(TrainConfig(**TINY_RUN, n_bits=9, out=str(tmp))), ValueError,
         "n_bits"),
    # truncated or corrupted checkpoint
    case("corrupt", "checkpoint-missing", "a path with no file",
         lambda tmp: load_checkpoint(tmp / "none.pt"), ValueError, "does not exist"),
    case("corrupt", "checkpoint-empty", "an empty file",
         lambda tmp: load_checkpoint(write(tmp, b"")), ValueError, "truncated or corrupted"),
    case("corrupt", "checkpoint-half", "the first half of a checkpoint",
         lambda tmp: load_checkpoint(saved_checkpoint(tmp, cut=0.5)), ValueError,
         "truncated or corrupted"),
    case("corrupt", "checkpoint-cut-end", "a checkpoint missing its last 10 bytes",
         lambda tmp: load_checkpoint(saved_checkpoint(tmp, cut=0.999)), ValueError,
         "truncated or corrupted"),
    case("corrupt", "checkpoint-garbage", "4 kB of random bytes",
         lambda tmp: load_checkpoint(write(tmp, np.random.default_rng(0).bytes(4096))),
         ValueError, "truncated or corrupted"),
    case("corrupt", "checkpoint-pickle", "a pickle of an arbitrary object (not weights)",
         lambda tmp: load_checkpoint(write(tmp, pickle.dumps(Path("x"), protocol=2))),
         ValueError, "truncated or corrupted"),
    case("corrupt", "checkpoint-foreign-file", "a torch file that is not a pyro-glow checkpoint",
         lambda tmp: (torch.save({"weights": torch.zeros(2)}, tmp / "w.pt"),
                      load_checkpoint(tmp / "w.pt")),
         ValueError, "not a pyro-glow checkpoint"),
    case("corrupt", "resume-truncated", "`--resume` from a truncated checkpoint",
         lambda tmp: (saved_checkpoint(tmp, cut=0.3),
                      Trainer(TrainConfig(**TINY_RUN, out=str(tmp / "run")), resume=True)),
         ValueError, "truncated or corrupted"),
    # checkpoint of another configuration
    case("foreign", "checkpoint-hidden", "a checkpoint whose config says hidden=16 (weights: 8)",
         lambda tmp: load_checkpoint(saved_checkpoint(tmp, set_config(hidden=16))), ValueError,
         r"another configuration; mismatched keys: shape: transform\.0\.net"),
    case("foreign", "checkpoint-steps", "a checkpoint whose config says 3 flow steps (saved: 2)",
         lambda tmp: load_checkpoint(saved_checkpoint(tmp, set_config(flow_steps=3))),
         ValueError, r"mismatched keys: missing: transform\.6\."),
    case("foreign", "checkpoint-prior", "a checkpoint whose config says prior=diag",
         lambda tmp: load_checkpoint(saved_checkpoint(tmp, set_config(prior="diag"))),
         ValueError, r"missing: prior\.loc, prior\.log_scale; unexpected: prior\.zeros"),
    case("foreign", "resume-hidden", "`--resume` with `--hidden 16` into a hidden=8 run",
         lambda tmp: resume_with(tmp, hidden=16), ValueError,
         "trained with another configuration \\(hidden=8\\)"),
    case("foreign", "resume-prior", "`--resume` with another prior",
         lambda tmp: resume_with(tmp, prior="mixture"), ValueError, "prior='normal'"),
    # sampling arguments
    case("sampling", "sample-negative-n", "`flow.sample(-1)`",
         lambda tmp: vector_flow().sample(-1), ValueError, "n must"),
    case("sampling", "sample-float-n", "`flow.sample(2.5)`",
         lambda tmp: vector_flow().sample(2.5), ValueError, "n must"),
    case("sampling", "sample-temperature", "`flow.sample(3, temperature=-0.5)`",
         lambda tmp: vector_flow().sample(3, -0.5), ValueError, "temperature"),
    case("sampling", "sample-temperature-nan", "`flow.sample(3, temperature=nan)`",
         lambda tmp: vector_flow().sample(3, float("nan")), ValueError, "temperature"),
    case("sampling", "image-temperature", "an image flow's `sample(3, -1.0)`",
         lambda tmp: image_flow().sample(3, -1.0), ValueError, "temperature"),
]  # fmt: skip


@pytest.mark.parametrize("bad", CASES, ids=[c.name for c in CASES])
def test_bad_input_raises(bad, tmp_path):
    torch.manual_seed(0)
    with pytest.raises(bad.error, match=bad.message):
        bad.call(tmp_path)


def test_every_issue_row_has_cases_and_names_are_unique():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))
    assert {c.row for c in CASES} == set(ROWS)


def render_table() -> str:
    """The docs table of ``CASES``, grouped by the issue's rows."""
    lines = [
        f"{len(CASES)} inputs, every one a test case of `tests/test_bad_input.py` (its id).",
        "",
        "| issue row | id | input | raises | message matches |",
        "|---|---|---|---|---|",
    ]
    for row, label in ROWS.items():
        for bad in (c for c in CASES if c.row == row):
            pattern = bad.message.replace("|", r"\|")
            lines.append(
                f"| {label} | `{bad.name}` | {bad.description} | `{bad.error.__name__}` | "
                f"`{pattern}` |"
            )
    return "\n".join(lines)


def docs_table_span(text: str) -> re.Match:
    """The ``TABLE_START ... TABLE_END`` block of the docs page; group 1 is the table."""
    match = re.search(re.escape(TABLE_START) + r"\n(.*?)\n?" + re.escape(TABLE_END), text, re.S)
    if match is None:
        raise ValueError(f"{DOCS} has no {TABLE_START} ... {TABLE_END} block")
    return match


def test_docs_table_is_the_catalogue():
    table = docs_table_span(DOCS.read_text()).group(1)
    documented = re.findall(r"^\| [^|]+ \| `([^`]+)` \|", table, re.M)
    assert sorted(documented) == sorted(c.name for c in CASES), (
        "docs/reliability.md lists other cases; regenerate it with "
        "`.venv/bin/python tests/test_bad_input.py --write-docs`"
    )
    assert table == render_table(), (
        "the bad-input table in docs/reliability.md is out of date; regenerate it with "
        "`.venv/bin/python tests/test_bad_input.py --write-docs`"
    )


def test_bad_input_leaves_layer_untouched():
    torch.manual_seed(0)
    layer = ActNorm(3)
    with pytest.raises(ValueError):
        layer(IMAGE_4CH)
    assert not bool(layer.initialized)  # a rejected batch must not initialise the layer
    with pytest.raises(ValueError, match="NaN"):
        layer.inv(with_value(IMAGE_3CH, (1, 2, 3, 4), torch.nan))
    assert not bool(layer.initialized)
    assert torch.equal(layer.log_scale, torch.zeros(3, 1, 1))
    layer.inv(IMAGE_3CH)
    assert bool(layer.initialized)


def test_an_empty_batch_passes_through_layers_without_initialising_them():
    """Empty in, empty out for layers (like torch ops); a Flow's log_prob refuses it."""
    layer = ActNorm(3)
    out = layer.inv(torch.zeros(0, 3, 8, 8))
    assert out.shape == (0, 3, 8, 8) and not bool(layer.initialized)
    coupling = AffineCoupling(4, 8)
    y, log_det = coupling.forward_and_log_det(torch.zeros(0, 4, 4, 4))
    assert y.shape == (0, 4, 4, 4) and log_det.shape == (0,)
    assert vector_flow().sample(0).shape == (0, 2)


def test_the_density_model_refuses_an_empty_batch():
    from pyro_glow.training import density_model

    with pytest.raises(ValueError, match="empty"):
        density_model(vector_flow())(torch.zeros(0, 2))


def test_a_trained_image_flow_accepts_its_own_data_range():
    flow = trained_image_flow()
    pixels = torch.randint(0, 256, (4, 3, 4, 4), dtype=torch.uint8)
    log_prob = flow.log_prob(dequantize(pixels))
    assert log_prob.shape == (4,) and torch.isfinite(log_prob).all()
    assert flow.log_prob(torch.zeros(1, 3, 4, 4)).isfinite().all()  # the range is closed
    with pytest.raises(ValueError, match="data_range"):
        type(flow)(flow.prior, flow.transform, data_range=(1.0, 0.0))


def test_a_failed_resume_leaves_the_run_folder_usable(tmp_path):
    """A refused ``--resume`` releases the folder's lock: the right configuration resumes."""
    with pytest.raises(ValueError, match="another configuration"):
        resume_with(tmp_path, hidden=16)
    trainer = resume_with(tmp_path)
    assert trainer.step == 1
    trainer.close()


def main(argv=None) -> None:
    """Print the docs table, or write it into docs/reliability.md (``--write-docs``)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write-docs", action="store_true", help=f"update {DOCS}")
    args = parser.parse_args(argv)
    table = render_table()
    if not args.write_docs:
        print(table)
        return
    text = DOCS.read_text()
    span = docs_table_span(text)
    block = f"{TABLE_START}\n{table}\n{TABLE_END}"
    DOCS.write_text(text[: span.start()] + block + text[span.end() :])
    print(f"{DOCS}: {len(CASES)} cases", file=sys.stderr)


if __name__ == "__main__":
    main()
