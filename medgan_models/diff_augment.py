"""Differentiable augmentation (DiffAugment, Zhao et al., NeurIPS 2020) for the discriminator.

The same random, differentiable transforms are applied to every image the discriminator sees,
real and generated alike, in its own step and in the generator's, so the generator is not
pushed to draw augmented images. Each image is transformed on its own, independently of the
data: a per-example transform, so DP-SGD's accounting is unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medgan_models.config import DIFF_AUGMENTATIONS


def translation(x: torch.Tensor, ratio: float = 0.125, background: float = -1.0) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its size in x and y (vacated pixels: background)."""
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    tx = torch.randint(-sh, sh + 1, (n, 1, 1), device=x.device)
    ty = torch.randint(-sw, sw + 1, (n, 1, 1), device=x.device)
    gi, gx, gy = torch.meshgrid(torch.arange(n, device=x.device), torch.arange(h, device=x.device),
                                torch.arange(w, device=x.device), indexing="ij")
    gx = (gx + tx + 1).clamp(0, h + 1)
    gy = (gy + ty + 1).clamp(0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1], value=background)
    return padded.permute(0, 2, 3, 1)[gi, gx, gy].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, ratio: float = 0.5, fill: float = 0.0) -> torch.Tensor:
    """Set a square of ``ratio`` of the size at a random place in each image to ``fill``."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ox = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=x.device)
    oy = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1) - ox + ch // 2
    cols = torch.arange(w, device=x.device).view(1, 1, w) - oy + cw // 2
    inside = (rows >= 0) & (rows < ch) & (cols >= 0) & (cols < cw)
    keep = (~inside).unsqueeze(1).to(x.dtype)
    return x * keep + fill * (1 - keep)


def diff_augment(x: torch.Tensor, policy: str) -> torch.Tensor:
    """``x`` through each transform named in ``policy`` (comma-separated; "" = none)."""
    if not policy or x.shape[0] == 0:
        return x
    for name in policy.split(","):
        if name == "translation":
            x = translation(x)
        elif name == "cutout":
            x = cutout(x)
        else:
            raise ValueError(f"unknown diff-augment '{name}' (known: {DIFF_AUGMENTATIONS})")
    return x
