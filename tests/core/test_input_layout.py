"""Input layout: a batch that looks channels-last is refused unless the model is wrapped with
``channels_first=True``, which states the layout and skips the guess."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import explainer as ex


def flat_net() -> nn.Module:
    """No convolution: the layout can only be guessed from the shape."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(2, 3))


X = torch.rand(4, 2, 1, 1, generator=torch.Generator().manual_seed(0))  # (N, C=2, H=1, W=1)


def test_channels_first_batch_of_a_net_without_convolutions_is_refused_by_default():
    with pytest.raises(ex.InputError, match="looks channels-last") as info:
        ex.explain(ex.wrap(flat_net()), X, "saliency", progress=False)
    assert "channels_first=True" in str(info.value)


def test_channels_first_true_accepts_the_batch_as_given():
    net = flat_net()
    e = ex.explain(
        ex.wrap(net, channels_first=True), X, "gradient_x_input", target=0, progress=False
    )
    assert e.attributions.shape == X.shape
    # gradient x input of a linear model: x * w, in the given (N, C, H, W) order
    expected = X.reshape(4, 2) * net[1].weight[0].detach()
    torch.testing.assert_close(e.attributions.reshape(4, 2), expected)


def test_channels_first_is_kept_when_a_model_is_wrapped_again():
    model = ex.wrap(flat_net(), channels_first=True)
    assert ex.wrap(model, name="renamed").channels_first is True
    assert ex.wrap(model, channels_first=False).channels_first is False
    assert ex.wrap(flat_net()).channels_first is False


def test_channels_first_must_be_a_bool():
    with pytest.raises(ex.InputError, match="`channels_first`"):
        ex.wrap(flat_net(), channels_first="NCHW")
