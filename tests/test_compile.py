"""torch.compile: the training step traces without graph breaks and matches eager mode.

The model is tiny and the backend ``aot_eager`` (Dynamo's graph capture and AOTAutograd's
forward and backward graphs, without Inductor's code generation) keeps the test fast;
``benchmarks/glow_step.py --compile`` times the Inductor-compiled step on the real model.
"""

import torch
from conftest import perturb_

from pyro_glow import glow

SHAPE = (3, 8, 8)


def _flow_and_data():
    torch.manual_seed(0)
    flow = glow(SHAPE, levels=2, steps=2, hidden=8, prior="diag")
    x = torch.rand((6,) + SHAPE)
    flow.log_prob(x)  # ActNorm's data-dependent initialisation, eagerly
    perturb_(flow)
    return flow, x


def test_flow_log_prob_equals_the_transformed_distribution():
    flow, x = _flow_and_data()
    torch.testing.assert_close(flow.log_prob(x), flow().log_prob(x), rtol=1e-5, atol=1e-4)


def test_training_step_has_no_graph_breaks():
    flow, x = _flow_and_data()
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(lambda data: -flow.log_prob(data).mean())(x)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def test_compiled_step_equals_eager():
    flow, x = _flow_and_data()
    loss = -flow.log_prob(x).mean()
    loss.backward()
    eager_grads = [p.grad.clone() for p in flow.parameters()]
    flow.zero_grad()
    torch._dynamo.reset()
    compiled = torch.compile(flow.log_prob, backend="aot_eager", fullgraph=True)
    compiled_loss = -compiled(x).mean()
    compiled_loss.backward()
    torch.testing.assert_close(compiled_loss, loss, rtol=1e-5, atol=1e-5)
    for param, eager in zip(flow.parameters(), eager_grads, strict=True):
        torch.testing.assert_close(param.grad, eager, rtol=1e-4, atol=1e-5)
