"""The Conv2d norm sampler for ghost clipping: per-sample gradient norms equal autograd's."""

import pytest
import torch
from torch import nn

from client.ghost_norms import conv2d_norm_sample, ghost_is_cheaper


def autograd_norms(layer, x, grad_out):
    """Each sample's weight and bias gradient norm, by autograd on that sample alone."""
    weight, bias = [], []
    for i in range(len(x)):
        layer.zero_grad()
        (layer(x[i:i + 1]) * grad_out[i:i + 1]).sum().backward()
        weight.append(layer.weight.grad.norm())
        if layer.bias is not None:
            bias.append(layer.bias.grad.norm())
    return torch.stack(weight), torch.stack(bias) if bias else None


@pytest.mark.parametrize("method", ["ghost", "explicit", "auto"])
@pytest.mark.parametrize("shape", [
    dict(in_channels=1, out_channels=8, kernel_size=4, stride=2, padding=1, size=16),
    dict(in_channels=16, out_channels=32, kernel_size=4, stride=2, padding=1, size=8),
    dict(in_channels=3, out_channels=5, kernel_size=3, stride=1, padding="same", size=7,
         bias=False),
    dict(in_channels=4, out_channels=6, kernel_size=(3, 2), stride=(2, 1), padding=(1, 0),
         dilation=(1, 2), size=9),
    dict(in_channels=4, out_channels=8, kernel_size=3, groups=2, size=6),  # Opacus' path
])
def test_norms_match_autograd_per_sample(shape, method):
    torch.manual_seed(0)
    shape = dict(shape)
    size = shape.pop("size")
    layer = nn.Conv2d(**shape).double()
    x = torch.randn(5, shape["in_channels"], size, size, dtype=torch.float64)
    grad_out = torch.randn_like(layer(x))
    norms = conv2d_norm_sample(layer, [x], grad_out, method=method)
    weight, bias = autograd_norms(layer, x, grad_out)
    torch.testing.assert_close(norms[layer.weight], weight)
    if bias is None:
        assert layer.bias is None and len(norms) == 1
    else:
        torch.testing.assert_close(norms[layer.bias], bias)


def test_empty_batch_gives_empty_norms():
    layer = nn.Conv2d(2, 3, 3)
    norms = conv2d_norm_sample(layer, [torch.zeros(0, 2, 5, 5)], torch.zeros(0, 3, 3, 3))
    assert all(v.shape == (0,) for v in norms.values()) and len(norms) == 2


def test_the_cheaper_method_is_chosen_per_layer():
    # a 32x32 DCGAN discriminator: first conv (16 inputs x 256 positions) explicit,
    # last conv (1024 inputs x 16 positions) by Gram matrices
    assert not ghost_is_cheaper(p=16, o=32, positions=256)
    assert ghost_is_cheaper(p=1024, o=128, positions=16)
