"""Ghost clipping's two backward passes, the first without weight gradients.

Opacus' ghost clipping (``DPTensorFastGradientClipping.backward``) runs a first backward pass
whose module hooks compute every sample's gradient norm, then a second one of the loss
re-weighted by each sample's clipping factor. Its first pass is a plain ``loss.backward()``:
it also computes every weight gradient, and then throws them away (``zero_grad``). Here the
first pass is ``torch.autograd.grad`` towards the discriminator's input images (which
therefore require a gradient) and the parameters of its layers other than convolutions
(cheap, and some, like the class projection, lie on no path to the images): autograd then
computes every layer's output gradient, which is all the norm hooks need, and no
convolution's weight gradient (about a third of a convolution's backward cost). The second
pass is Opacus' own, towards the parameters only. Same norms, same clipped sum, same step.
It reads Opacus 1.6's ghost-clipping loss (``module``, ``optimizer``, ``loss_per_sample``) and
the norms its hooks leave on each parameter (``_norm_sample``): tests/test_ghost_backward.py
checks the result against Opacus' own two passes, so an Opacus change that breaks it fails
there.
"""

from __future__ import annotations

import torch
from torch import nn


def first_pass_targets(module: nn.Module) -> list[torch.Tensor]:
    """The trainable parameters of every layer but the convolutions (whose output gradients
    the input images' gradient needs anyway)."""
    return [p for layer in module.modules() if not isinstance(layer, nn.Conv2d)
            for p in layer.parameters(recurse=False) if p.requires_grad]


def ghost_backward(loss, images: torch.Tensor) -> None:
    """Both passes for an Opacus ghost-clipping ``loss`` (what ``loss.backward()`` does) of a
    forward pass over ``images`` (a leaf that requires grad), the first one without the weight
    gradients it would discard. A layer whose hook did not run in the first pass is an error,
    never a stale norm from the step before."""
    private_d, per_sample = loss.module, loss.loss_per_sample
    if loss.loss_reduction not in ("mean", "sum"):
        raise ValueError(f"loss reduction '{loss.loss_reduction}': only 'mean' and 'sum'")
    if not images.requires_grad:
        raise ValueError("ghost_backward needs the forward pass's images to require grad")
    reduced = per_sample.mean() if loss.loss_reduction == "mean" else per_sample.sum()
    parameters = list(private_d.trainable_parameters)
    for p in parameters:
        p._norm_sample = None
    torch.autograd.grad(reduced, [images, *first_pass_targets(private_d)], retain_graph=True,
                        allow_unused=True)
    missing = [tuple(p.shape) for p in parameters if p._norm_sample is None]
    if missing:
        raise RuntimeError(f"no per-sample gradient norm for parameters of shape {missing}")
    loss.optimizer.zero_grad()
    coefficients = private_d.get_clipping_coef().to(per_sample.device)
    private_d.disable_hooks()
    try:
        torch.sum(coefficients * per_sample).backward(inputs=parameters)
    finally:
        private_d.enable_hooks()
