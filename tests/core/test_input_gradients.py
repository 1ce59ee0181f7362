"""The gradient pass every gradient method runs: one backward from a one-hot seed gives
each row's gradient of its own target, as autograd through the selected output would."""

from __future__ import annotations

import torch
from torch import nn

import explainer as ex
from explainer._runtime import input_gradients


def test_each_row_gets_the_gradient_of_its_own_target_and_the_outputs_come_back():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    model = ex.wrap(net, modality="tabular")
    x, target = torch.randn(5, 6), torch.tensor([0, 2, 1, 2, 0])
    with model.evaluating():
        grads, out = input_gradients(model, x, target, full=True)
        _, selected = input_gradients(model, x, target)
    for i in range(5):
        row = x[i : i + 1].clone().requires_grad_(True)
        (expected,) = torch.autograd.grad(net(row)[0, target[i]], row)
        torch.testing.assert_close(grads[i], expected[0], rtol=0, atol=1e-7)
    torch.testing.assert_close(out, net(x).detach())
    torch.testing.assert_close(selected, out.gather(1, target[:, None]).squeeze(1))
    assert not out.requires_grad and not grads.requires_grad
