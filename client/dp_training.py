"""Local DP-GAN training: the discriminator under Opacus DP-SGD, the generator through it.

Privacy argument, in short. Only the discriminator touches real images, so only its updates
are DP-SGD steps: Poisson-sampled real batches, per-sample gradient clipping to
``max-grad-norm``, Gaussian noise of ``noise-multiplier * max-grad-norm``. The fake half of
each discriminator batch has a FIXED size (the expected real batch size, not the sampled
one), so adding or removing one real record changes exactly one clipped term: the
sensitivity stays ``max-grad-norm`` and the fake batch is never charged. The generator learns
only from the (already private) discriminator and random noise: post-processing, no extra cost.

Per-sample gradients come from Opacus in one of three ways (``grad-sample-mode``): ``hooks``
and ``functorch`` materialise every sample's gradient and clip it in the optimizer; ``ghost``
(ghost clipping) computes only every sample's gradient *norm* in a first backward pass, then
backpropagates the loss re-weighted by each sample's clipping factor ``min(1, C / norm)``: the
same clipped sum, without the per-sample gradient tensors. It needs the loss to go through
Opacus' criterion wrapper, so every mode computes the discriminator loss with
:class:`GanCriterion` (one forward over the concatenated real + fake batch, one per-sample loss).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from opacus import PrivacyEngine
from opacus.accountants.utils import get_noise_multiplier
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from client.data import SiteData, augment_batch
from client.privacy_ledger import quiet_accounting
from medgan_models.config import RunConfig
from medgan_models.losses import GanLoss, make_loss
from medgan_models.networks import Discriminator, Generator


@dataclass(frozen=True)
class LocalTrainingResult:
    """What one round of local training did."""

    d_loss: float
    g_loss: float
    steps: int
    noise_multiplier: float
    sample_rate: float
    seconds: float


def sample_rate_for(num_examples: int, batch_size: int) -> float:
    """Poisson sampling rate, exactly as Opacus derives it from the data loader (1/len)."""
    batches = -(-num_examples // batch_size)  # ceil
    return 1.0 / max(batches, 1)


def derive_noise_multiplier(config: RunConfig, num_examples: int) -> float:
    """The noise multiplier given, or the one that spends ``target-epsilon`` over all rounds."""
    if config.noise_multiplier > 0:
        return config.noise_multiplier
    return _noise_for_budget(config.target_epsilon, config.delta,
                             sample_rate_for(num_examples, config.batch_size),
                             config.num_rounds * config.local_steps, config.accountant)


@lru_cache(maxsize=16)
def _noise_for_budget(epsilon: float, delta: float, sample_rate: float, steps: int,
                      accountant: str) -> float:
    """Binary search (slow with PRV): cached, since every round of a run asks the same."""
    with quiet_accounting():
        return float(get_noise_multiplier(target_epsilon=epsilon, target_delta=delta,
                                          sample_rate=sample_rate, steps=steps,
                                          accountant=accountant, epsilon_tolerance=0.005))


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device '{name}' was asked for but CUDA is not available here")
    return torch.device(name)


class GanCriterion(nn.Module):
    """The discriminator loss of a real + fake batch: ``criterion(scores, n_real)``.

    The first ``n_real`` scores are real images, the rest fake ones; each sample gets its own
    loss term (the GAN loss' real or fake side), reduced by ``reduction`` ("mean", "sum" or
    "none"). This is the interface Opacus' ghost-clipping wrapper drives: it switches
    ``reduction`` to "none" to get the per-sample losses it re-weights.
    """

    def __init__(self, loss: GanLoss) -> None:
        super().__init__()
        self.loss = loss
        self.reduction = "mean"

    def forward(self, scores: torch.Tensor, n_real: int) -> torch.Tensor:
        per_sample = torch.cat([self.loss.discriminator_real(scores[:n_real]),
                                self.loss.discriminator_fake(scores[n_real:])])
        if self.reduction == "none":
            return per_sample
        return per_sample.sum() if self.reduction == "sum" else per_sample.mean()


def make_private_discriminator(discriminator: Discriminator, d_optimizer: torch.optim.Optimizer,
                               loader: DataLoader, loss: GanLoss, config: RunConfig,
                               noise_multiplier: float):
    """Opacus' wrapping for ``config.grad_sample_mode``, the same for every mode:
    Poisson sampling, clipping to ``max-grad-norm``, mean loss reduction (the optimizer divides
    the noisy clipped sum by the expected real batch size).

    Returns (private discriminator, DP optimizer, criterion, Poisson data loader, engine); the
    criterion is :class:`GanCriterion`, wrapped by Opacus for ghost clipping.
    """
    criterion = GanCriterion(loss)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        engine = PrivacyEngine(accountant=config.accountant)
        made = engine.make_private(
            module=discriminator, optimizer=d_optimizer, data_loader=loader,
            noise_multiplier=noise_multiplier, max_grad_norm=config.max_grad_norm,
            poisson_sampling=True, grad_sample_mode=config.grad_sample_mode,
            criterion=criterion, loss_reduction="mean",
        )
    if config.grad_sample_mode == "ghost":
        private_d, d_optimizer, criterion, private_loader = made
    else:
        private_d, d_optimizer, private_loader = made
    return private_d, d_optimizer, criterion, private_loader, engine


def _random_labels(num_classes: int, n: int, device: torch.device) -> torch.Tensor | None:
    return torch.randint(0, num_classes, (n,), device=device) if num_classes > 1 else None


def train_locally(generator: Generator, discriminator: Discriminator, data: SiteData,
                  config: RunConfig, noise_multiplier: float, device: torch.device,
                  seed: int) -> LocalTrainingResult:
    """Run ``config.local_steps`` DP discriminator steps (and generator steps in between)."""
    start = time.perf_counter()
    torch.manual_seed(seed)
    generator.to(device).train()
    discriminator.to(device).train()
    loss = make_loss(config.loss, config.wgan_clip)
    betas = (0.0, 0.9) if config.loss == "wasserstein" else (0.5, 0.999)
    g_optimizer = torch.optim.Adam(generator.parameters(), config.learning_rate_generator,
                                   betas=betas)
    d_optimizer = torch.optim.Adam(discriminator.parameters(), config.learning_rate_discriminator,
                                   betas=betas)
    dataset = TensorDataset(torch.from_numpy(data.images), torch.from_numpy(data.labels))
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    private_d, d_optimizer, criterion, private_loader, engine = make_private_discriminator(
        discriminator, d_optimizer, loader, loss, config, noise_multiplier)
    fake_batch = max(1, round(len(data) * private_loader.sample_rate))
    num_classes = config.num_classes if config.conditional else 0
    augment_rng = torch.Generator(device=device).manual_seed(seed + 1)
    d_losses, g_losses = [], []
    # The real batch needs no input gradient; PyTorch warns about that for every hook.
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    batches = iter(private_loader)
    for step in range(config.local_steps):
        try:
            real, labels = next(batches)
        except StopIteration:
            batches = iter(private_loader)
            real, labels = next(batches)
        real, labels = real.to(device), labels.to(device)
        if config.augment:
            real = augment_batch(real, augment_rng)
        d_losses.append(discriminator_step(generator, private_d, d_optimizer, criterion, real,
                                           labels, fake_batch, num_classes, config, device))
        loss.after_discriminator_step(discriminator)
        if (step + 1) % config.discriminator_steps == 0:
            g_losses.append(_generator_step(generator, private_d, g_optimizer, d_optimizer, loss,
                                            fake_batch, num_classes, config, device))
    steps = sum(n for _, _, n in engine.accountant.history)
    if steps != config.local_steps:
        raise RuntimeError(f"accountant saw {steps} steps, expected {config.local_steps}")
    return LocalTrainingResult(
        d_loss=float(np.mean(d_losses)),
        g_loss=float(np.mean(g_losses)) if g_losses else float("nan"),
        steps=steps,
        noise_multiplier=noise_multiplier,
        sample_rate=float(private_loader.sample_rate),
        seconds=time.perf_counter() - start,
    )


def discriminator_step(generator, private_d, d_optimizer, criterion, real, labels, fake_batch,
                       num_classes, config, device) -> float:
    """One DP-SGD step on real (Poisson batch, maybe empty) + fixed-size fake images."""
    with torch.no_grad():
        fake_labels = _random_labels(num_classes, fake_batch, device)
        fake = generator(torch.randn(fake_batch, config.latent_dim, device=device), fake_labels)
    images = torch.cat([real, fake])
    both_labels = torch.cat([labels, fake_labels]) if num_classes > 1 else None
    d_optimizer.zero_grad(set_to_none=True)
    scores = private_d(images, both_labels)
    # A mean over the forward's batch: Opacus rescales it by that batch size, so each sample's
    # gradient (hooks, functorch) or gradient norm (ghost) is its own before clipping.
    d_loss = criterion(scores, real.shape[0])
    d_loss.backward()  # ghost: two passes (norms, then the clipped re-weighted loss)
    d_optimizer.step()
    return float(d_loss.detach())


def _generator_step(generator, private_d, g_optimizer, d_optimizer, loss, fake_batch,
                    num_classes, config, device) -> float:
    """One generator step through the discriminator, with Opacus' hooks off (no real data)."""
    fake_labels = _random_labels(num_classes, fake_batch, device)
    fake = generator(torch.randn(fake_batch, config.latent_dim, device=device), fake_labels)
    private_d.disable_hooks()
    try:
        g_loss = loss.generator(private_d(fake, fake_labels))
        g_optimizer.zero_grad(set_to_none=True)
        g_loss.backward()
        g_optimizer.step()
    finally:
        private_d.enable_hooks()
        d_optimizer.zero_grad(set_to_none=True)  # drop the D grads this step left behind
    return float(g_loss.detach())
