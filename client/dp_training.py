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
same clipped sum, without the per-sample gradient tensors (its first pass computes no
convolution weight gradient here: :mod:`client.ghost_backward`). It needs the loss to go through
Opacus' criterion wrapper, so every mode computes the discriminator loss with
:class:`GanCriterion` (one forward over the concatenated real + fake batch, one per-sample loss).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from opacus import PrivacyEngine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from client import ghost_norms  # noqa: F401  (registers the Conv2d norm sampler for ghost)
from client.data import SiteData, augment_batch
from client.ghost_backward import ghost_backward
from medgan_models.config import RunConfig
from medgan_models.diff_augment import diff_augment
from medgan_models.losses import GanLoss, make_loss, mode_seeking_penalty
from medgan_models.mean_embedding import MeanEmbedding
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


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device '{name}' was asked for but CUDA is not available here")
    return torch.device(name)


class GanCriterion(nn.Module):
    """The discriminator loss of a real + fake batch: ``criterion(scores, n_real, ...)``.

    The first ``n_real`` scores are real images, the rest fake ones; each sample gets its own
    loss term (the GAN loss' real or fake side), reduced by ``reduction`` ("mean", "sum" or
    "none"). With an auxiliary classifier (``logits`` and the real images' ``labels``), each
    real image's term also holds ``classifier_weight`` times its cross-entropy: the
    classifier learns from real images only, inside the same clipped per-sample gradient.
    This is the interface Opacus' ghost-clipping wrapper drives: it switches ``reduction`` to
    "none" to get the per-sample losses it re-weights.
    """

    def __init__(self, loss: GanLoss, classifier_weight: float = 0.0) -> None:
        super().__init__()
        self.loss = loss
        self.classifier_weight = classifier_weight
        self.reduction = "mean"

    def forward(self, scores: torch.Tensor, n_real: int, logits: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> torch.Tensor:
        real_terms = self.loss.discriminator_real(scores[:n_real])
        if logits is not None and self.classifier_weight > 0:
            real_terms = real_terms + self.classifier_weight * F.cross_entropy(
                logits[:n_real], labels, reduction="none")
        per_sample = torch.cat([real_terms, self.loss.discriminator_fake(scores[n_real:])])
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
    criterion = GanCriterion(loss, config.auxiliary_classifier)
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


def _random_labels(num_classes: int, n: int, device: torch.device,
                   weights: torch.Tensor | None = None) -> torch.Tensor | None:
    """``n`` fake labels: uniform over the classes, or drawn in proportion to ``weights``."""
    if num_classes <= 1:
        return None
    if weights is None:
        return torch.randint(0, num_classes, (n,), device=device)
    return torch.multinomial(weights, n, replacement=True).to(device)


def fake_label_weights(config: RunConfig, embedding: MeanEmbedding | None) -> torch.Tensor | None:
    """The class mix of a site's fake images: None (uniform), or with ``fake-labels "site"``
    the site's noisy class counts from its mean-embedding release (post-processing of a
    release already paid for, so no new privacy cost); uniform without a release (``mean-
    embedding`` 0) or when it holds no counts."""
    if config.fake_labels != "site" or not config.conditional or embedding is None \
            or embedding.counts is None:
        return None
    counts = embedding.counts.detach().float().cpu().clamp(min=0)
    if counts.shape != (config.num_classes,) or not counts.sum() > 0:
        return None
    return counts / counts.sum()


class LocalTrainer:
    """One round of local training, set up once and advanced one DP step at a time.

    ``train_locally`` runs it to the end; the benchmark times its ``step`` on its own.
    ``embedding``: the site's private mean embedding, which the generator steps match with
    weight ``mean-embedding`` (already released: using it costs nothing more).
    """

    def __init__(self, generator: Generator, discriminator: Discriminator, data: SiteData,
                 config: RunConfig, noise_multiplier: float, device: torch.device,
                 seed: int, site_code: int | None = None,
                 embedding: MeanEmbedding | None = None) -> None:
        torch.manual_seed(seed)
        self.generator, self.discriminator = generator.to(device).train(), discriminator
        discriminator.to(device).train()
        discriminator.freeze_features(config.discriminator_frozen_blocks)
        self.config, self.device, self.noise_multiplier = config, device, noise_multiplier
        self.loss = make_loss(config.loss, config.wgan_clip)
        betas = (0.0, 0.9) if config.loss == "wasserstein" else (0.5, 0.999)
        self.g_optimizer = torch.optim.Adam(generator.parameters(),
                                            config.learning_rate_generator, betas=betas)
        # a larger beta1 averages the DP noise over more steps
        d_betas = betas if config.loss == "wasserstein" else (config.discriminator_beta1, 0.999)
        d_optimizer = torch.optim.Adam([p for p in discriminator.parameters() if p.requires_grad],
                                       config.learning_rate_discriminator, betas=d_betas)
        dataset = TensorDataset(torch.from_numpy(data.images), torch.from_numpy(data.labels))
        loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True,
                            generator=torch.Generator().manual_seed(seed))
        (self.private_d, self.d_optimizer, self.criterion, self.private_loader,
         self.engine) = make_private_discriminator(discriminator, d_optimizer, loader,
                                                   self.loss, config, noise_multiplier)
        self.fake_batch = max(1, round(len(data) * self.private_loader.sample_rate))
        # A site-conditional generator draws this site's fakes with this site's code only.
        self.fake_sites = None
        if generator.site_embedding is not None:
            if site_code is None or not 0 <= site_code < generator.num_sites:
                raise ValueError(f"this generator is site-conditional ({generator.num_sites} "
                                 f"sites): pass the site's code, got {site_code}")
            self.fake_sites = torch.full((self.fake_batch,), site_code, device=device)
        self.num_classes = config.num_classes if config.conditional else 0
        self.augment_rng = torch.Generator(device=device).manual_seed(seed + 1)
        if config.mean_embedding > 0 and embedding is None:
            raise ValueError("mean-embedding is on: pass the site's released mean embedding")
        self.embedding = embedding.to(device) if config.mean_embedding > 0 else None
        self.label_weights = fake_label_weights(config, embedding)
        self.d_losses: list[float] = []
        self.g_losses: list[float] = []
        self.steps_done = 0
        # The real batch needs no input gradient; PyTorch warns about that for every hook.
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        self._batches = iter(self.private_loader)

    def _next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            return next(self._batches)
        except StopIteration:
            self._batches = iter(self.private_loader)
            return next(self._batches)

    def step(self) -> None:
        """One DP discriminator step, and ``generator-steps`` generator steps every
        ``discriminator-steps``. The first generator step after a discriminator step takes
        that step's fake images (drawn with their graph, as PyTorch's DCGAN example does: one
        generator forward pass less) unless mode seeking wants its paired labels."""
        config, device = self.config, self.device
        real, labels = self._next_batch()
        real, labels = real.to(device), labels.to(device)
        if config.augment:
            real = augment_batch(real, self.augment_rng)
        generator_follows = (self.steps_done + 1) % config.discriminator_steps == 0
        reuse = generator_follows and config.mode_seeking == 0
        with torch.set_grad_enabled(reuse):
            fakes = self._draw_fakes()
        self.d_losses.append(discriminator_step(
            self.private_d, self.d_optimizer, self.criterion, real, labels, fakes.images.detach(),
            fakes.labels, config))
        self.loss.after_discriminator_step(self.discriminator)
        self.steps_done += 1
        if not generator_follows:
            return
        for i in range(config.generator_steps):
            self.g_losses.append(_generator_step(
                self.private_d, self.g_optimizer, self.d_optimizer, self.loss,
                fakes if reuse and i == 0 else self._draw_fakes(pair_labels=True),
                config, self.embedding))

    def _draw_fakes(self, pair_labels: bool = False) -> Fakes:
        """A fixed-size batch of this site's fake images, in its class mix; ``pair_labels``:
        with mode seeking, the batch's two halves share their labels."""
        return draw_fakes(self.generator, self.fake_batch, self.num_classes, self.config,
                          self.device, self.fake_sites, self.label_weights,
                          pair_labels and self.config.mode_seeking > 0)

    def result(self, seconds: float) -> LocalTrainingResult:
        """What the round did; checks the accountant saw every step."""
        steps = sum(n for _, _, n in self.engine.accountant.history)
        if steps != self.steps_done:
            raise RuntimeError(f"accountant saw {steps} steps, expected {self.steps_done}")
        return LocalTrainingResult(
            d_loss=float(np.mean(self.d_losses)),
            g_loss=float(np.mean(self.g_losses)) if self.g_losses else float("nan"),
            steps=steps,
            noise_multiplier=self.noise_multiplier,
            sample_rate=float(self.private_loader.sample_rate),
            seconds=seconds,
        )


def train_locally(generator: Generator, discriminator: Discriminator, data: SiteData,
                  config: RunConfig, noise_multiplier: float, device: torch.device,
                  seed: int, site_code: int | None = None,
                  embedding: MeanEmbedding | None = None) -> LocalTrainingResult:
    """Run ``config.local_steps`` DP discriminator steps (and generator steps in between);
    ``site_code``: the site's index into a site-conditional generator; ``embedding``: its
    released mean embedding (when ``mean-embedding`` is on)."""
    start = time.perf_counter()
    trainer = LocalTrainer(generator, discriminator, data, config, noise_multiplier, device, seed,
                           site_code, embedding)
    for _ in range(config.local_steps):
        trainer.step()
    result = trainer.result(time.perf_counter() - start)
    if result.steps != config.local_steps:
        raise RuntimeError(f"accountant saw {result.steps} steps, expected {config.local_steps}")
    return result


@dataclass(frozen=True)
class Fakes:
    """Generated images with the labels and latent codes that drew them."""

    images: torch.Tensor
    labels: torch.Tensor | None
    codes: torch.Tensor


def draw_fakes(generator: Generator, n: int, num_classes: int, config: RunConfig,
               device: torch.device, fake_sites: torch.Tensor | None = None,
               label_weights: torch.Tensor | None = None, pair_labels: bool = False) -> Fakes:
    """``n`` fake images (``fake_sites``: the site's own code, for a site-conditional
    generator; ``label_weights``: their class mix, None = uniform; ``pair_labels``: image i
    and image i + n/2 share a label, as mode seeking's pairs do). Gradients flow or not as
    the caller's grad mode says."""
    labels = _random_labels(num_classes, n, device, label_weights)
    if pair_labels and labels is not None:
        half = labels[: (n + 1) // 2]
        labels = torch.cat([half, half])[:n]
    codes = torch.randn(n, config.latent_dim, device=device)
    return Fakes(generator(codes, labels, fake_sites), labels, codes)


def discriminator_step(private_d, d_optimizer, criterion, real, labels, fake, fake_labels,
                       config) -> float:
    """One DP-SGD step on real (Poisson batch, maybe empty) + fixed-size fake images
    (no gradient reaches the generator)."""
    images = diff_augment(torch.cat([real, fake]), config.diff_augment)
    ghost = config.grad_sample_mode == "ghost"
    if ghost:  # see client/ghost_backward.py: the norms' pass follows the images' gradient
        images = images.detach().requires_grad_(True)
    both_labels = torch.cat([labels, fake_labels]) if fake_labels is not None else None
    d_optimizer.zero_grad(set_to_none=True)
    scores, logits = private_d(images, both_labels, with_logits=True)
    # A mean over the forward's batch: Opacus rescales it by that batch size, so each sample's
    # gradient (hooks, functorch) or gradient norm (ghost) is its own before clipping.
    d_loss = criterion(scores, real.shape[0], logits, labels)
    if ghost:  # two passes: the norms, then the clipped loss
        ghost_backward(d_loss, images)
    else:
        d_loss.backward()
    d_optimizer.step()
    return float(d_loss.detach())


def _generator_step(private_d, g_optimizer, d_optimizer, loss, fakes: Fakes, config,
                    embedding=None) -> float:
    """One generator step on ``fakes`` (drawn with their graph) through the discriminator,
    with Opacus' hooks off (no real data).

    The discriminator's parameters are frozen for it: the backward pass then computes only
    the gradient flowing back to the generator, not the discriminator's weight gradients
    (which this step would throw away).
    """
    fake, fake_labels = fakes.images, fakes.labels
    private_d.disable_hooks()
    d_params = [p for p in private_d.parameters() if p.requires_grad]
    try:
        for p in d_params:
            p.requires_grad_(False)
        scores, logits = private_d(diff_augment(fake, config.diff_augment), fake_labels,
                                   with_logits=True)
        g_loss = loss.generator(scores)
        if logits is not None and config.auxiliary_classifier > 0:  # draw what makes the class
            g_loss = g_loss + config.auxiliary_classifier * F.cross_entropy(logits, fake_labels)
        if config.mode_seeking > 0:
            g_loss = g_loss + config.mode_seeking * mode_seeking_penalty(fake, fakes.codes)
        if embedding is not None:  # the kernel MMD to the site's released mean embedding
            g_loss = g_loss + config.mean_embedding * embedding.loss(fake, fake_labels)
        g_optimizer.zero_grad(set_to_none=True)
        g_loss.backward()
        g_optimizer.step()
    finally:
        for p in d_params:
            p.requires_grad_(True)
        private_d.enable_hooks()
        d_optimizer.zero_grad(set_to_none=True)  # no D gradient may reach the next DP step
    return float(g_loss.detach())
