"""Image features from a fixed, randomly initialised CNN, for precision/recall/density/coverage.

k-nearest-neighbour metrics need a feature space where distance means "looks different".
Pretrained ImageNet networks are the usual choice, but they need a download and are biased
towards natural images; Naeem et al. (2020, "Reliable Fidelity and Diversity Metrics for
Generative Models") and Lee, Kim & Lee (2023, "Demystifying Randomly Initialized Networks for
Evaluating Generative Models") show that a randomly initialised VGG-style network embeds images
well enough for these metrics, on domains far from ImageNet too. The network here is built
from a fixed seed, so every site and every run embeds images identically, with no weights file.
Hand-crafted radiomic features (FRD) are a poor space for k-NN balls: one feature with a tiny
spread in the real images (the background's noise floor) dominates every distance.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

EMBEDDING_SEED = 20200521  # fixed: features must be comparable across sites and runs
EMBEDDING_SIZE = 32  # images are resized to this before embedding
WIDTHS = (32, 64, 128)  # two 3x3 convolutions per stage, then 2x2 average pooling
BATCH = 256


def _network(channels: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    c_in = channels
    for width in WIDTHS:
        layers += [nn.Conv2d(c_in, width, 3, padding=1), nn.ReLU(),
                   nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2)]
        c_in = width
    layers.append(nn.Flatten())
    return nn.Sequential(*layers)


@lru_cache(maxsize=8)
def random_embedding_network(channels: int, device: str = "cpu") -> nn.Sequential:
    """The embedding network for ``channels``-channel images: He-initialised from
    :data:`EMBEDDING_SEED` on the CPU (the same weights on every machine), then moved to
    ``device`` (in float64 on CUDA, whose float32 convolutions may use TF32: figures would
    then differ from the CPU's); in eval mode, no gradients."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(EMBEDDING_SEED)
        net = _network(channels)
        for module in net.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)
    dtype = torch.float64 if torch.device(device).type == "cuda" else torch.float32
    return net.eval().requires_grad_(False).to(device=device, dtype=dtype)


@torch.no_grad()
def random_features(images: np.ndarray | torch.Tensor,
                    device: torch.device | str = "cpu") -> np.ndarray:
    """(N, D) float64 features of (N, C, H, W) images in [-1, 1] (D = 128 * 4 * 4), computed
    on ``device``."""
    x = torch.as_tensor(np.asarray(images), dtype=torch.float32)
    if x.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(x.shape)}")
    device = torch.device(device)
    net = random_embedding_network(int(x.shape[1]), str(device))
    dtype = next(net.parameters()).dtype
    out = []
    for start in range(0, x.shape[0], BATCH):
        batch = x[start:start + BATCH].to(device)
        if batch.shape[-1] != EMBEDDING_SIZE or batch.shape[-2] != EMBEDDING_SIZE:
            batch = F.interpolate(batch, size=(EMBEDDING_SIZE, EMBEDDING_SIZE),
                                  mode="bilinear", antialias=True, align_corners=False)
        out.append(net(batch.to(dtype)).double().cpu())
    return torch.cat(out).numpy() if out else np.empty((0, WIDTHS[-1] * 16))
