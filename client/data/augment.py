"""Per-sample data augmentation for images in [-1, 1] (flip, small rotation, intensity jitter)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None,
             device: torch.device) -> torch.Tensor:
    """``n`` uniform draws from the generator's device, moved to ``device``."""
    src = generator.device if generator is not None else device
    draw = torch.rand(n, generator=generator, device=src, dtype=torch.float32)
    return (low + (high - low) * draw).to(device)


def augment_batch(images: torch.Tensor, generator: torch.Generator | None = None, flip: bool = True,
                  max_rotation_deg: float = 10.0, intensity_jitter: float = 0.1) -> torch.Tensor:
    """Randomly augment a batch of (N, C, H, W) images with values in [-1, 1].

    Each sample independently gets: a horizontal flip with probability 0.5 (if
    ``flip``), a rotation by an angle uniform in [-max_rotation_deg,
    max_rotation_deg] (bilinear, corners filled with the background value -1),
    and an intensity jitter ``x * s + t`` with ``s`` in [1 - j, 1 + j] and ``t``
    in [-j, j] (``j = intensity_jitter``), clamped to [-1, 1].

    The random parameters are drawn independently of the data and every output
    image depends only on its own input image, so this is a per-example
    transform: applying it inside DP-SGD does not change the privacy accounting
    (each example still influences exactly one per-sample gradient).

    Works on any device (random numbers come from ``generator``'s device and are
    moved to the images' device) and for N == 0; returns a new tensor.
    """
    if images.dim() != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got {tuple(images.shape)}")
    n, device = images.shape[0], images.device
    out = images.clone()
    if n == 0:
        return out
    if flip:
        flip_mask = _uniform(n, 0.0, 1.0, generator, device) < 0.5
        out = torch.where(flip_mask.view(n, 1, 1, 1), out.flip(-1), out)
    if max_rotation_deg > 0:
        angle = _uniform(n, -max_rotation_deg, max_rotation_deg, generator, device) * (math.pi / 180.0)
        cos, sin = torch.cos(angle), torch.sin(angle)
        zero = torch.zeros_like(cos)
        theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
        theta = theta.to(out.dtype)
        grid = F.affine_grid(theta, list(out.shape), align_corners=False)
        # Rotate (x + 1) with zero padding, then shift back: padded corners become -1.
        out = F.grid_sample(out + 1.0, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1.0
    if intensity_jitter > 0:
        scale = _uniform(n, 1.0 - intensity_jitter, 1.0 + intensity_jitter, generator, device)
        shift = _uniform(n, -intensity_jitter, intensity_jitter, generator, device)
        out = out * scale.to(out.dtype).view(n, 1, 1, 1) + shift.to(out.dtype).view(n, 1, 1, 1)
    return out.clamp(-1.0, 1.0)
