"""A private mean embedding of a site's images: a diversity signal for the generator.

DP-MERF (Harder et al., AISTATS 2021): map every image to random Fourier features (a fixed,
data-independent map whose inner products approximate a Gaussian kernel), sum them per class,
add Gaussian noise once, and train the generator to match the noisy class means. The distance
between the means is the kernel MMD, which is large when the generator drops part of the data
(mode collapse), unlike the discriminator's score of single images. Every image's features,
with a constant coordinate appended for the class count, have norm 1, so one image changes the
sum by at most 1: one Gaussian release with noise multiplier ``z`` (sensitivity 1, sample rate
1, one step) is what the site's privacy ledger records. The generator then uses the release as
often as it likes (post-processing). ``TextureFeatures`` (a random conv net's response
statistics) can sit beside the Fourier features in one release (``JointFeatures``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


# A class's released mean is matched only if its noise's expected norm is at most this (feature
# means have norm <= 1; real classes' means here have norm ~0.85 and differ by ~0.1-0.5).
MAX_NOISE_NORM = 0.5


class RandomFourierFeatures(nn.Module):
    """Images -> ``num_features`` random Fourier features of a Gaussian kernel of width
    ``bandwidth`` (in pixel space, values in [-1, 1]); every row has norm 1. The random map
    comes from ``seed`` alone, so every site builds the same one."""

    def __init__(self, input_dim: int, num_features: int, bandwidth: float, seed: int) -> None:
        super().__init__()
        if num_features < 2 or num_features % 2:
            raise ValueError(f"the number of random features must be even and >= 2, "
                             f"got {num_features}")
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("frequencies", torch.randn(input_dim, num_features // 2,
                                                        generator=generator) / bandwidth)

    @property
    def dim(self) -> int:
        """Length of one image's feature vector."""
        return self.frequencies.shape[1] * 2

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        projection = images.flatten(1) @ self.frequencies
        scale = math.sqrt(self.frequencies.shape[1])
        return torch.cat([projection.cos(), projection.sin()], dim=1) / scale


class TextureFeatures(nn.Module):
    """Images -> statistics of a fixed random convolutional network's responses: per stage
    (full, half and quarter resolution) and channel, the spatial mean of the rectified response
    and the response's root mean square. They describe what a Gaussian kernel on pixels
    hardly sees (contrast, edges, sharpness, a scanner's grain); their means are the
    perceptual-feature moments of DP-MEPF (Harder et al., TMLR 2023) with a random network in
    place of a pretrained one (nothing is downloaded). Every row has norm 1; the weights come
    from ``seed`` alone, so every site builds the same network."""

    WIDTHS = (16, 32, 64)

    def __init__(self, channels: int, seed: int) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed + 1)
        self.convs = nn.ModuleList()
        c_in = channels
        for width in self.WIDTHS:
            conv = nn.Conv2d(c_in, width, 3, padding=1, bias=False)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator)
                                  * math.sqrt(2.0 / (c_in * 9)))
            self.convs.append(conv.requires_grad_(False))
            c_in = width

    @property
    def dim(self) -> int:
        """Length of one image's feature vector."""
        return 2 * sum(self.WIDTHS)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        stats = []
        x = images
        for i, conv in enumerate(self.convs):
            h = conv(x)
            stats += [h.relu().mean((2, 3)), h.square().mean((2, 3)).add(1e-8).sqrt()]
            x = h.relu()
            if i < len(self.convs) - 1:
                x = F.avg_pool2d(x, 2)
        out = torch.cat(stats, dim=1)
        return out / out.norm(dim=1, keepdim=True).clamp(min=1e-8)


class JointFeatures(nn.Module):
    """Several feature maps side by side, each scaled by 1 / sqrt(count): rows of norm 1 stay
    of norm 1, so the release's sensitivity is unchanged."""

    def __init__(self, *maps: nn.Module) -> None:
        super().__init__()
        self.maps = nn.ModuleList(maps)

    @property
    def dim(self) -> int:
        """Length of one image's feature vector."""
        return sum(self.blocks)

    @property
    def blocks(self) -> list[int]:
        """Each map's length: the loss measures each map's gap on its own."""
        return [m.dim for m in self.maps]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        scale = 1.0 / math.sqrt(len(self.maps))
        return torch.cat([m(images) for m in self.maps], dim=1) * scale


class MeanEmbedding(nn.Module):
    """Noisy class-wise means of a site's image features, and the generator's loss to them."""

    def __init__(self, features: nn.Module, means: torch.Tensor,
                 weights: torch.Tensor, counts: torch.Tensor | None = None) -> None:
        super().__init__()
        dim = features.dim
        if means.ndim != 2 or means.shape[1] != dim or weights.shape != means.shape[:1]:
            raise ValueError(f"a mean embedding of shape {tuple(means.shape)} (weights "
                             f"{tuple(weights.shape)}) does not fit {dim} random features")
        if counts is not None and counts.shape != weights.shape:
            raise ValueError(f"{tuple(counts.shape)} class counts for {len(weights)} classes")
        self.features = features
        self.register_buffer("means", means.float())
        self.register_buffer("weights", weights.float())
        # the release's noisy image count per class (>= 0); None for a release kept by an
        # older version, which stored only the weights
        self.counts = counts.float().clamp(min=0) if counts is not None else None

    @classmethod
    def from_sums(cls, features: nn.Module, sums: torch.Tensor,
                  counts: torch.Tensor, noise_multiplier: float = 0.0) -> MeanEmbedding:
        """From (noisy) class-wise feature sums and counts (a count is at least 1). A class
        weighs its share of the images, or nothing when the noise added to its mean has an
        expected norm above ``MAX_NOISE_NORM`` (too few images for the noise: its mean would be
        mostly noise, a target no image distribution can reach)."""
        noisy = counts
        counts = counts.clamp(min=1.0)
        noise_norm = noise_multiplier * math.sqrt(sums.shape[1]) / counts
        weights = torch.where(noise_norm <= MAX_NOISE_NORM, counts, torch.zeros_like(counts))
        return cls(features, sums / counts[:, None], weights / counts.sum(), noisy)

    def loss(self, fake: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Sum over classes (weighted by their noisy share; 0 for a class too small for the
        noise) of the distance between the fake images' mean features and the class's noisy
        real mean (the kernel MMD); with several feature maps, the sum of each map's distance,
        so that a map with small gaps (texture statistics) still steers the generator."""
        phi = self.features(fake)
        blocks = getattr(self.features, "blocks", [phi.shape[1]])
        if labels is None:
            labels = torch.zeros(len(fake), dtype=torch.long, device=fake.device)
        total = fake.new_zeros(())
        for c in range(self.means.shape[0]):
            chosen = labels == c
            if chosen.any() and self.weights[c] > 0:
                gap = phi[chosen].mean(0) - self.means[c]
                distance = sum(part.norm() for part in gap.split(blocks))
                total = total + self.weights[c] * distance
        return total


@torch.no_grad()
def private_mean_embedding(images: np.ndarray, labels: np.ndarray, num_classes: int,
                           features: nn.Module, noise_multiplier: float,
                           noise: torch.Generator | None = None,
                           batch_size: int = 512) -> MeanEmbedding:
    """Release the class-wise feature sums and counts of ``images`` with Gaussian noise of
    standard deviation ``noise_multiplier`` (the sensitivity is 1: see the module doc)."""
    classes = max(1, num_classes)
    dim = features.dim
    sums = torch.zeros(classes, dim + 1, dtype=torch.float64)
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(images[start:start + batch_size]).float()
        y = torch.from_numpy(labels[start:start + batch_size]).long()
        if classes == 1:
            y = torch.zeros_like(y)
        phi = torch.cat([features(x), torch.ones(len(x), 1)], dim=1) / math.sqrt(2.0)
        sums.index_add_(0, y, phi.double())
    sums += noise_multiplier * torch.randn(sums.shape, generator=noise, dtype=torch.float64)
    counts = sums[:, -1] * math.sqrt(2.0)
    return MeanEmbedding.from_sums(features, (sums[:, :-1] * math.sqrt(2.0)).float(),
                                   counts.float(), noise_multiplier * math.sqrt(2.0))
