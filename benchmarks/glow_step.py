"""One Glow training step, pyro-glow against normflows, timed alternately in one process.

    python benchmarks/glow_step.py [--repeats 20] [--compile] [--json FILE]

Same architecture as ``cifar_cpu.py`` (L=3, K=8, hidden 128, affine coupling, LU 1x1
convolution), batch 32 of 3x32x32, float32, a plain PyTorch loop on both sides
(``-log_prob(x).mean()``, backward, global clipping, multi-tensor Adam). The candidates
alternate A B A B after two warm-up steps each; the table gives the median time of each phase.

- Floor: pyro-glow's coupling networks alone divided by normflows' full step, the lowest
  step ratio a flow on these networks (and their oneDNN convolutions) could reach.
- Flow overhead: each side's full step divided by a step of its coupling networks alone (the
  same networks on inputs of the shapes and layouts they see in the flow, gradients with
  respect to those inputs included as in the flow, same optimizer); 1.0 is the
  limit, everything above it is the flow's own work (ActNorm, 1x1 convolutions, splits,
  element-wise coupling maths, log-determinants, Python).
- ``--compile``: pyro-glow's step with ``torch.compile`` on ``log_prob`` (forward and the
  backward graph compiled by AOTAutograd), after ``torch._dynamo.explain`` has counted its
  graph breaks; compilation time is reported separately.
- On a GPU (when one is present) the course's model (L=3, K=16, hidden 512, batch 64) is
  timed as well, pyro-glow against normflows.

Needs ``pip install normflows``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

import torch
from harness import (
    check_parameter_counts,
    normflows_glow,
    print_targets,
    target_row,
    write_json,
)

from pyro_glow import glow
from pyro_glow.transforms import AffineCoupling

PHASES = ("forward", "backward", "clip", "optimizer")


def timed_step(
    parameters: list[torch.nn.Parameter], loss: Callable[[], torch.Tensor], sync: bool
) -> Callable[[], list[float]]:
    """A training step over ``parameters`` (multi-tensor Adam, global clipping at 50) that
    returns the seconds of each of :data:`PHASES`; ``sync`` waits for the GPU at each mark."""
    optimizer = torch.optim.Adam(parameters, lr=1e-5, foreach=True)

    def clock() -> float:
        if sync:
            torch.cuda.synchronize()
        return time.perf_counter()

    def step() -> list[float]:
        marks = [clock()]
        value = loss()
        marks.append(clock())
        optimizer.zero_grad()
        value.backward()
        marks.append(clock())
        torch.nn.utils.clip_grad_norm_(parameters, 50.0)
        marks.append(clock())
        optimizer.step()
        marks.append(clock())
        return [b - a for a, b in zip(marks, marks[1:], strict=False)]

    return step


def coupling_networks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The coupling networks of either side (pyro-glow's ``AffineCoupling.net``, normflows'
    ``ConvNet2d``)."""
    import normflows as nf

    ours = [m.net for m in model.modules() if isinstance(m, AffineCoupling)]
    return ours or [m for m in model.modules() if isinstance(m, nf.nets.ConvNet2d)]


def network_inputs(
    networks: list[torch.nn.Module], run: Callable[[], object]
) -> list[torch.Tensor]:
    """The input each network receives during ``run()`` (detached copies in the same layout,
    requiring gradients)."""
    seen: dict[int, torch.Tensor] = {}

    def keep(module: torch.nn.Module, args: tuple) -> None:
        # As in the flow, the input needs its gradient (the networks backpropagate into it).
        seen[id(module)] = args[0].detach().clone().requires_grad_()

    hooks = [net.register_forward_pre_hook(keep) for net in networks]
    try:
        with torch.no_grad():
            run()
    finally:
        for hook in hooks:
            hook.remove()
    return [seen[id(net)] for net in networks]


def networks_alone(
    model: torch.nn.Module, run: Callable[[], object]
) -> tuple[list[torch.nn.Parameter], Callable[[], torch.Tensor]]:
    """Parameters and loss of a step that runs only ``model``'s coupling networks."""
    networks = coupling_networks(model)
    inputs = network_inputs(networks, run)

    def loss() -> torch.Tensor:
        return sum(net(x).mean() for net, x in zip(networks, inputs, strict=True))

    return [p for net in networks for p in net.parameters()], loss


def compare(
    device: str, levels: int, steps: int, hidden: int, batch: int, args: argparse.Namespace
) -> dict:
    torch.manual_seed(0)
    x = torch.rand(batch, 3, 32, 32, device=device)
    ours = glow((3, 32, 32), levels=levels, steps=steps, hidden=hidden).to(device)
    peer = normflows_glow(levels, steps, hidden).to(device)
    ours.log_prob(x), peer.log_prob(x - 0.5, None)  # data-dependent ActNorm initialisation
    sync = device == "cuda"
    candidates = {
        "pyro-glow": timed_step(list(ours.parameters()), lambda: -ours.log_prob(x).mean(), sync),
        "normflows": timed_step(
            list(peer.parameters()), lambda: -peer.log_prob(x - 0.5, None).mean(), sync
        ),
    }
    if device == "cpu":
        for name, model, run in (
            ("pyro-glow nets only", ours, lambda: ours.log_prob(x)),
            ("normflows nets only", peer, lambda: peer.log_prob(x - 0.5, None)),
        ):
            candidates[name] = timed_step(*networks_alone(model, run), sync)
    result: dict = {"parameters": check_parameter_counts(ours, peer, "Glow")}
    if args.compile:
        explanation = torch._dynamo.explain(lambda: -ours.log_prob(x).mean())()
        result["graphs"] = explanation.graph_count
        result["graph_breaks"] = explanation.graph_break_count
        torch._dynamo.reset()
        compiled = torch.compile(ours.log_prob)
        start = time.perf_counter()
        (-compiled(x).mean()).backward()
        result["compile_seconds"] = time.perf_counter() - start
        candidates["pyro-glow compiled"] = timed_step(
            list(ours.parameters()), lambda: -compiled(x).mean(), sync
        )
    times: dict[str, list[list[float]]] = {name: [] for name in candidates}
    for repeat in range(args.repeats + 2):
        for name, step in candidates.items():
            phases = step()
            if repeat >= 2:
                times[name].append(phases)
    for name, rows in times.items():
        medians = [1e3 * statistics.median(column) for column in zip(*rows, strict=True)]
        total = 1e3 * statistics.median(sum(row) for row in rows)
        result[name] = {**dict(zip(PHASES, medians, strict=True)), "total": total}
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument(
        "--devices",
        nargs="+",
        choices=("cpu", "cuda"),
        default=["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"],
        help="cpu: L=3 K=8 hidden 128 batch 32; cuda: the course's L=3 K=16 hidden 512 batch 64",
    )
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if "cuda" in args.devices and not torch.cuda.is_available():
        parser.error("--devices cuda: no CUDA device is available")
    configs = {}
    if "cpu" in args.devices:
        configs["cpu L=3 K=8 hidden 128 batch 32"] = ("cpu", 3, 8, 128, 32)
    if "cuda" in args.devices:
        configs["cuda L=3 K=16 hidden 512 batch 64"] = ("cuda", 3, 16, 512, 64)
    results, targets = {}, []
    for label, config in configs.items():
        result = results[label] = compare(*config, args)
        print(f"Glow step, {label}, {torch.get_num_threads()} threads (ms, medians)")
        print(f"{'':22s}" + "".join(f"{phase:>10s}" for phase in (*PHASES, "total")))
        for name, row in result.items():
            if isinstance(row, dict) and "total" in row:
                print(f"{name:22s}" + "".join(f"{row[k]:10.1f}" for k in (*PHASES, "total")))
        peer_total = result["normflows"]["total"]
        ratio = result["pyro-glow"]["total"] / peer_total
        targets.append(target_row(f"{label}: step pyro-glow / normflows", ratio, 0.7))
        if "pyro-glow nets only" in result:
            for side, target in (("pyro-glow", 1.15), ("normflows", None)):
                overhead = result[side]["total"] / result[f"{side} nets only"]["total"]
                result[f"{side} flow overhead"] = overhead
                if target is None:
                    print(f"flow overhead of normflows (for reference): {overhead:.2f}")
                else:
                    targets.append(
                        target_row(f"{label}: flow overhead, pyro-glow", overhead, target)
                    )
            # No flow built on these networks can take less than them: the eager ratio's floor.
            floor = result["pyro-glow nets only"]["total"] / peer_total
            targets.append(
                target_row(f"{label}: floor, pyro-glow nets only / normflows", floor, None)
            )
        if "pyro-glow compiled" in result:
            compiled = result["pyro-glow compiled"]["total"]
            print(
                f"torch.compile: {result['graphs']} graph(s), {result['graph_breaks']} graph "
                f"break(s), compiled in {result['compile_seconds']:.0f} s; speed-up over eager "
                f"{result['pyro-glow']['total'] / compiled:.2f}x"
            )
            name = f"{label}: compiled step pyro-glow / normflows"
            targets.append(target_row(name, compiled / peer_total, 0.55))
    print_targets(targets)
    write_json(args.json, {"results": results, "targets": targets})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
