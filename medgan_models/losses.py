"""GAN losses: non-saturating minimax, hinge, and Wasserstein (with weight clipping).

Discriminator losses are returned *per sample* so that the DP step can average them over a
concatenated real + fake batch and Opacus can clip each sample's gradient on its own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import nn


class GanLoss(ABC):
    """A pair of losses for the discriminator and the generator."""

    @abstractmethod
    def discriminator_real(self, scores: torch.Tensor) -> torch.Tensor:
        """Per-sample loss for real images' scores."""

    @abstractmethod
    def discriminator_fake(self, scores: torch.Tensor) -> torch.Tensor:
        """Per-sample loss for generated images' scores."""

    @abstractmethod
    def generator(self, fake_scores: torch.Tensor) -> torch.Tensor:
        """Scalar generator loss from the discriminator's scores of its images."""

    def after_discriminator_step(self, discriminator: nn.Module) -> None:
        """Hook run after each discriminator update (e.g. to enforce a Lipschitz bound)."""


class MinimaxLoss(GanLoss):
    """The non-saturating GAN loss of Goodfellow et al. (2014)."""

    def discriminator_real(self, scores: torch.Tensor) -> torch.Tensor:
        return F.softplus(-scores)

    def discriminator_fake(self, scores: torch.Tensor) -> torch.Tensor:
        return F.softplus(scores)

    def generator(self, fake_scores: torch.Tensor) -> torch.Tensor:
        return F.softplus(-fake_scores).mean()


class HingeLoss(GanLoss):
    """The hinge loss (Lim & Ye, 2017; Miyato et al., 2018, SNGAN; BigGAN): the discriminator
    is penalised only for images on the wrong side of a margin of 1, so a sample it already
    scores confidently has a zero gradient (under DP: a zero clipped term, leaving the clipping
    budget to the samples it still gets wrong); the generator raises its images' scores."""

    def discriminator_real(self, scores: torch.Tensor) -> torch.Tensor:
        return F.relu(1.0 - scores)

    def discriminator_fake(self, scores: torch.Tensor) -> torch.Tensor:
        return F.relu(1.0 + scores)

    def generator(self, fake_scores: torch.Tensor) -> torch.Tensor:
        return -fake_scores.mean()


class WassersteinLoss(GanLoss):
    """WGAN (Arjovsky et al., 2017) with weight clipping as the Lipschitz constraint.

    Clipping the weights after the noisy DP-SGD update is post-processing, so it costs no
    privacy; a gradient penalty would need per-sample double backprop, which Opacus lacks.
    """

    def __init__(self, clip_value: float = 0.01) -> None:
        self.clip_value = clip_value

    def discriminator_real(self, scores: torch.Tensor) -> torch.Tensor:
        return -scores

    def discriminator_fake(self, scores: torch.Tensor) -> torch.Tensor:
        return scores

    def generator(self, fake_scores: torch.Tensor) -> torch.Tensor:
        return -fake_scores.mean()

    @torch.no_grad()
    def after_discriminator_step(self, discriminator: nn.Module) -> None:
        for parameter in discriminator.parameters():
            parameter.clamp_(-self.clip_value, self.clip_value)


def make_loss(name: str, wgan_clip: float = 0.01) -> GanLoss:
    """The loss called ``name`` ('minimax', 'hinge' or 'wasserstein')."""
    if name == "minimax":
        return MinimaxLoss()
    if name == "hinge":
        return HingeLoss()
    if name == "wasserstein":
        return WassersteinLoss(wgan_clip)
    raise ValueError(f"unknown loss '{name}': use 'minimax', 'hinge' or 'wasserstein'")


def mode_seeking_penalty(images: torch.Tensor, codes: torch.Tensor, eps: float = 1e-5
                         ) -> torch.Tensor:
    """Mode-seeking term of MSGAN (Mao et al., CVPR 2019) for the generator's loss.

    The batch is two halves of pairs (same labels, different codes); the penalty is large when
    two codes give nearly the same image: 1 / (mean|G(z1) - G(z2)| / mean|z1 - z2| + eps).
    It involves no real image, so under DP it costs no privacy.
    """
    half = images.shape[0] // 2
    if half == 0:
        return images.new_zeros(())
    image_gap = (images[:half] - images[half:2 * half]).abs().mean()
    code_gap = (codes[:half] - codes[half:2 * half]).abs().mean()
    return 1.0 / (image_gap / code_gap + eps)
