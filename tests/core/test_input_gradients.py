"""The gradient pass every gradient method runs: one backward from a one-hot seed gives
each row's gradient of its own target, as autograd through the selected output would."""

from __future__ import annotations

import pytest
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


def test_the_engine_path_gives_autograd_grads_values_and_its_errors():
    from explainer._runtime import seeded_gradient

    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    x = torch.randn(3, 3, 8, 8, requires_grad=True)
    out = net(x)
    seed = torch.randn_like(out)
    (expected,) = torch.autograd.grad(out, x, seed, retain_graph=True)
    torch.testing.assert_close(seeded_gradient(out, x, seed), expected, rtol=0, atol=0)
    unused = torch.randn(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="not have been used in the graph"):
        seeded_gradient(net(x), unused, seed)  # the same error autograd.grad raises


def test_tensor_subclasses_go_through_autograd_grad():
    from explainer._runtime import seeded_gradient

    class Tagged(torch.Tensor):
        pass

    net = nn.Linear(4, 2)
    x = torch.randn(3, 4).as_subclass(Tagged).requires_grad_(True)
    out = net(x)
    assert type(out) is Tagged
    grad = seeded_gradient(out, x, torch.ones(3, 2))
    torch.testing.assert_close(grad.as_subclass(torch.Tensor), net.weight.sum(0).expand(3, 4))
