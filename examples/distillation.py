"""Probability distillation on two moons: a small student flow fitted by SVI to a large
teacher flow, minimising KL(student || teacher) with the teacher as the Pyro model.

    python examples/distillation.py [--teacher-steps 3000] [--warm-start 2000]
        [--student-steps 2000] [--student glow-mixture|glow|iaf] [--json FILE]

The idea is Parallel WaveNet's (van den Oord et al., arXiv:1711.10433; the course's
"probability distillation"): a teacher whose density is cheap to evaluate trains a student
that is cheap to *sample*, by minimising the reverse KL E_q[log q(x) - log p_teacher(x)], which
needs only samples of the student, their log q, and the teacher's density at them.

1. Teacher: ``glow((2,), steps=--teacher-flow-steps, hidden=--teacher-hidden)`` (16 x 128)
   with a fixed standardising layer, fitted by maximum likelihood to ``make_moons_data``.
2. Student (8 x 64): a hand-written guide sampling a vector Glow on a learnable
   two-Gaussian mixture prior (the course's two-moons prior; ``--student glow-mixture``,
   the default: the lowest and steadiest KL in docs/guides.md),
   :class:`pyro_glow.guides.AutoGlow` (``--student glow``), or Pyro's ``AutoIAFNormal``
   (``--student iaf``, an inverse autoregressive flow, Parallel WaveNet's student).
   a. Warm start (``--warm-start`` steps): maximum likelihood of the student on fresh teacher
      samples, i.e. the forward KL(teacher || student), which is mass-covering.
   b. Distillation (``--student-steps``): the model is ``pyro.sample("x", teacher())``
      (teacher frozen), the student is its guide, fitted by ``SVI`` with ``Trace_ELBO``; the
      ELBO is log 1 - KL(student || teacher) since the teacher is normalised.
   The reverse KL alone is mode-seeking: a student started from scratch settles on part of
   one moon (KL about log 2 or more); the warm start puts it on both, and the reverse KL then
   sharpens it. ``--anneal`` optionally tempers the target during the first part of (b):
   p_teacher^beta, beta rising from 0.1 to 1 (``pyro.poutine.scale`` on the model's site).
3. Report: KL(student || teacher) and KL(teacher || student) from ``--eval`` samples, test
   NLL of both on fresh moons, and sampling throughput of both (median of 5 timed draws of
   ``--eval`` samples).

In Glow both directions cost one pass, so here the student is faster because it is smaller;
in Parallel WaveNet the autoregressive teacher needs one pass per sample *dimension* to
sample, which is what makes distillation pay there.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence

import pyro
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoIAFNormal

from pyro_glow import Flow, GaussianMixture, StandardNormal
from pyro_glow.builders import flow_steps
from pyro_glow.data import make_moons_data
from pyro_glow.guides import AutoGlow, set_actnorm_identity
from pyro_glow.transforms import ElementwiseAffine

STUDENTS = ("glow", "glow-mixture", "iaf")


def make_teacher(train: torch.Tensor, steps: int, hidden: int) -> Flow:
    """A vector Glow whose last generative layer fixes the data's mean and scale."""
    units = ElementwiseAffine(
        (2,), loc=train.mean(0), log_scale=train.std(0).log(), learnable=False
    )
    return Flow(StandardNormal((2,)), flow_steps(2, steps, hidden, event_dim=1) + [units])


def fit_teacher(teacher: Flow, train: torch.Tensor, args: argparse.Namespace) -> None:
    optimizer = torch.optim.Adam(teacher.parameters(), lr=args.teacher_lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(args.teacher_steps, 1))
    generator = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        teacher.log_prob(train[:1024])  # ActNorm's data-dependent initialisation
    for _ in range(args.teacher_steps):
        batch = train[torch.randint(len(train), (args.batch_size,), generator=generator)]
        loss = -teacher.log_prob(batch).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    teacher.requires_grad_(False)


class FlowStudent:
    """A hand-written guide whose distribution is a pyro-glow :class:`~pyro_glow.Flow`."""

    def __init__(self, flow: Flow) -> None:
        self.flow = flow

    def __call__(self) -> torch.Tensor:
        pyro.module("student", self.flow)
        return pyro.sample("x", self.flow())

    def get_posterior(self) -> torch.distributions.Distribution:
        return self.flow()


def make_student(kind: str, model: Callable, teacher: Flow, args: argparse.Namespace) -> Callable:
    if kind == "glow-mixture":
        draws = teacher.sample(10_000)
        units = ElementwiseAffine(
            (2,), loc=draws.mean(0), log_scale=draws.std(0).log(), learnable=False
        )
        steps = flow_steps(2, args.student_flow_steps, args.student_hidden, event_dim=1)
        flow = Flow(GaussianMixture((2,), components=2), steps + [units])
        set_actnorm_identity(flow.transform)
        return FlowStudent(flow)
    if kind == "glow":
        return AutoGlow(
            model, steps=args.student_flow_steps, hidden=args.student_hidden, init_scale=1.0
        )
    if kind == "iaf":
        hidden = [args.student_hidden, args.student_hidden]
        return AutoIAFNormal(model, hidden_dim=hidden, num_transforms=args.student_flow_steps)
    raise ValueError(f"unknown student {kind!r}; choose one of {STUDENTS}")


def student_parameters(student: Callable) -> list[torch.nn.Parameter]:
    """The student's trainable tensors (a Pyro autoguide, or the flow of a FlowStudent)."""
    module = student.flow if isinstance(student, FlowStudent) else student
    return [p for p in module.parameters() if p.requires_grad]


def warm_start(teacher: Flow, student: Callable, args: argparse.Namespace) -> None:
    """Forward KL: maximum likelihood of the student on fresh teacher samples.

    Minimises KL(teacher || student) = E_p[log p - log q], which is mass-covering: the
    student learns to put mass on both moons before the mode-seeking reverse KL sharpens
    it. Each step draws a new batch from the teacher, so the student never overfits.
    """
    student()  # builds the autoguide's parameters
    optimizer = torch.optim.Adam(student_parameters(student), lr=args.warm_lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(args.warm_start, 1))
    for _ in range(args.warm_start):
        with torch.no_grad():
            draws = teacher.sample(args.batch_size)
        loss = -student.get_posterior().log_prob(draws).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()


def distil(teacher: Flow, args: argparse.Namespace) -> Callable:
    inverse_temperature = [1.0]

    def model() -> None:
        with pyro.poutine.scale(scale=inverse_temperature[0]):
            pyro.sample("x", teacher())

    pyro.clear_param_store()
    student = make_student(args.student, model, teacher, args)
    warm_start(teacher, student, args)
    decay = 0.1 ** (1 / max(args.student_steps, 1))
    optim = pyro.optim.ClippedAdam({"lr": args.student_lr, "lrd": decay})
    svi = SVI(model, student, optim, Trace_ELBO(args.particles, vectorize_particles=True))
    anneal_steps = args.anneal * args.student_steps
    for step in range(args.student_steps):
        progress = step / anneal_steps if anneal_steps else 1.0
        inverse_temperature[0] = min(1.0, 0.1 + 0.9 * progress)
        svi.step()
    return student


def throughput(draw: Callable[[int], torch.Tensor], n: int) -> float:
    """Samples per second, median of 5 timed draws of ``n`` after one warm-up draw."""
    draw(n)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        draw(n)
        times.append(time.perf_counter() - start)
    return n / statistics.median(times)


@torch.no_grad()
def evaluate(teacher: Flow, student: Callable, test: torch.Tensor, n: int) -> dict:
    posterior = student.get_posterior()
    x_student = posterior.sample((n,))
    log_q = posterior.log_prob(x_student)
    kl_student_teacher = (log_q - teacher.log_prob(x_student)).mean().item()
    x_teacher = teacher.sample(n)
    kl_teacher_student = (
        (teacher.log_prob(x_teacher) - student.get_posterior().log_prob(x_teacher)).mean().item()
    )

    def sample_student(count: int) -> torch.Tensor:
        return student.get_posterior().sample((count,))

    return dict(
        kl_student_teacher=kl_student_teacher,
        kl_teacher_student=kl_teacher_student,
        teacher_test_nll=-teacher.log_prob(test).mean().item(),
        student_test_nll=-student.get_posterior().log_prob(test).mean().item(),
        teacher_samples_per_s=throughput(teacher.sample, n),
        student_samples_per_s=throughput(sample_student, n),
        teacher_parameters=sum(p.numel() for p in teacher.parameters()),
        student_parameters=sum(p.numel() for p in pyro.get_param_store().values()),
    )


@torch.no_grad()
def plot(teacher: Flow, student: Callable, path: str, n: int = 20_000) -> None:
    """Teacher samples beside student samples (2-D histograms on the same square)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(7, 3.2))
    bins = [torch.linspace(-1.5, 2.5, 121).numpy(), torch.linspace(-1.0, 1.5, 76).numpy()]
    for ax, title, x in (
        (axes[0], "teacher", teacher.sample(n)),
        (axes[1], "student", student.get_posterior().sample((n,))),
    ):
        ax.hist2d(x[:, 0].numpy(), x[:, 1].numpy(), bins=bins, cmap="viridis")
        ax.set_title(f"{title} samples", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-size", type=int, default=10_000)
    parser.add_argument("--test-size", type=int, default=5_000)
    parser.add_argument("--teacher-steps", type=int, default=3000, help="ML training steps")
    parser.add_argument("--teacher-flow-steps", type=int, default=16)
    parser.add_argument("--teacher-hidden", type=int, default=128)
    parser.add_argument("--teacher-lr", type=float, default=2e-3)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--student", choices=STUDENTS, default="glow-mixture")
    parser.add_argument("--student-steps", type=int, default=2000, help="SVI steps")
    parser.add_argument("--student-flow-steps", type=int, default=8)
    parser.add_argument("--student-hidden", type=int, default=64)
    parser.add_argument("--student-lr", type=float, default=5e-4, help="SVI learning rate")
    parser.add_argument(
        "--warm-start",
        type=int,
        default=2000,
        help="forward-KL steps (student fitted to teacher samples) before SVI (0: none)",
    )
    parser.add_argument("--warm-lr", type=float, default=5e-3)
    parser.add_argument("--particles", type=int, default=256, help="ELBO particles per step")
    parser.add_argument(
        "--anneal",
        type=float,
        default=0.0,
        help="fraction of the student's steps over which the target's inverse temperature "
        "rises from 0.1 to 1 (0: none)",
    )
    parser.add_argument("--eval", type=int, default=100_000, help="samples for KL and speed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--figure", help="write teacher and student samples here (PNG)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    pyro.set_rng_seed(args.seed)
    train, test = make_moons_data(args.train_size, args.test_size, seed=args.seed)
    teacher = make_teacher(train, args.teacher_flow_steps, args.teacher_hidden)
    fit_teacher(teacher, train, args)
    student = distil(teacher, args)
    result = evaluate(teacher, student, test, args.eval)
    print(f"KL(student || teacher) = {result['kl_student_teacher']:.4f} nats")
    print(f"KL(teacher || student) = {result['kl_teacher_student']:.4f} nats")
    print("| flow | parameters | test NLL (nats) | samples / s |")
    print("|---|---|---|---|")
    for who in ("teacher", "student"):
        print(
            f"| {who} | {result[who + '_parameters']} | {result[who + '_test_nll']:.4f} | "
            f"{result[who + '_samples_per_s']:.3g} |"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"args": vars(args), "results": result}, handle, indent=1)
    if args.figure:
        plot(teacher, student, args.figure)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
