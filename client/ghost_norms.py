"""Per-sample gradient norms of ``nn.Conv2d`` for Opacus' ghost clipping.

Opacus 1.6 ships ghost-clipping norm samplers for ``Linear`` and ``Embedding`` only; for a
convolution it falls back to materialising every sample's gradient (as in ``hooks`` mode) and
then runs the second backward pass on top, which makes ghost clipping *slower* than hooks on a
convolutional discriminator. This module registers, through Opacus' public
``register_norm_sampler``, a sampler that returns only the norms. With the layer's input
unfolded to ``a`` (``[n, p, L]``: p = in-channels x kernel size, L = output positions) and its
output gradient ``b`` (``[n, o, L]``), sample i's weight gradient is ``b_i a_i^T`` and

    ||b_i a_i^T||_F^2 = <a_i^T a_i, b_i^T b_i>   (the "ghost norm", Li et al. 2022)

which costs ``L^2 (p + o)`` per sample instead of ``o p L`` for the gradient itself. Each
layer takes the cheaper of the two (early layers have many positions, late ones many
channels); neither keeps a per-sample gradient after the call. The bias gradient is
``sum_L b_i``.
"""

from __future__ import annotations

import torch
from opacus.grad_sample import register_norm_sampler
from opacus.grad_sample.conv import compute_conv_grad_sample
from opacus.utils.tensor_utils import unfold2d
from torch import nn


def ghost_is_cheaper(p: int, o: int, positions: int) -> bool:
    """Whether the Gram-matrix norm (L^2 (p + o) multiply-adds) beats the explicit gradient
    (o p L, plus writing and re-reading an o x p matrix per sample): up to twice the
    explicit route's multiply-adds, the Gram route measured faster on CPU (it never
    materialises the gradient)."""
    return positions * (p + o) < 2 * o * p


@register_norm_sampler(nn.Conv2d)
def conv2d_norm_sample(layer: nn.Conv2d, activations: list[torch.Tensor],
                       backprops: torch.Tensor, method: str = "auto"
                       ) -> dict[nn.Parameter, torch.Tensor]:
    """Per-sample L2 norms of the weight (and bias) gradient of one ``Conv2d`` call.

    ``method``: "auto" (cheaper of the two), "ghost" (Gram matrices) or "explicit"
    (materialise each sample's gradient, then its norm); the last two are for tests.
    """
    x = activations[0].to(backprops.dtype)
    n = x.shape[0]
    out: dict[nn.Parameter, torch.Tensor] = {}
    if n == 0:  # an empty batch (Poisson sampling)
        return {p: torch.zeros(0, device=backprops.device, dtype=backprops.dtype)
                for p in (layer.weight, layer.bias) if p is not None and p.requires_grad}
    if layer.groups != 1 or layer.padding_mode != "zeros":  # not derived here: Opacus' way
        grads = compute_conv_grad_sample(layer, activations, backprops)
        return {p: g.reshape(n, -1).norm(2, dim=1) for p, g in grads.items()}
    a = unfold2d(x, kernel_size=layer.kernel_size, padding=layer.padding, stride=layer.stride,
                 dilation=layer.dilation)  # [n, p, L]
    b = backprops.reshape(n, -1, a.shape[-1])  # [n, o, L]
    if layer.weight.requires_grad:
        use_ghost = (ghost_is_cheaper(a.shape[1], b.shape[1], a.shape[2])
                     if method == "auto" else method == "ghost")
        if use_ghost:
            gram_a = torch.bmm(a.transpose(1, 2), a)  # [n, L, L]
            gram_b = torch.bmm(b.transpose(1, 2), b)
            out[layer.weight] = (gram_a * gram_b).sum(dim=(1, 2)).clamp(min=0).sqrt()
        else:
            per_sample = torch.bmm(b, a.transpose(1, 2))  # [n, o, p]
            out[layer.weight] = torch.linalg.vector_norm(per_sample, dim=(1, 2))
    if layer.bias is not None and layer.bias.requires_grad:
        out[layer.bias] = b.sum(dim=2).norm(2, dim=1)
    return out
