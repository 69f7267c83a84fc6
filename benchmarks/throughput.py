"""Local training speed: non-private vs DP-SGD (per gradient mode), ours vs a bare Opacus loop.

All three loops run the same GAN step (one discriminator update on a real batch plus an equal
fake batch, one generator update), on the same models and data, in the same process.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch
from opacus import PrivacyEngine
from torch.utils.data import DataLoader, TensorDataset

from client.data import SiteData
from client.dp_training import train_locally
from medgan_models.config import RunConfig
from medgan_models.losses import MinimaxLoss
from medgan_models.networks import build_models


def bench_data(size: int, n: int, seed: int = 0) -> SiteData:
    """Random images in [-1, 1] with two classes (speed does not depend on content)."""
    rng = np.random.default_rng(seed)
    return SiteData(rng.uniform(-1, 1, (n, 1, size, size)).astype(np.float32),
                    rng.integers(0, 2, n).astype(np.int64), 2, ["a", "b"], "benchmark")


def _config(size: int, batch: int, steps: int, mode: str = "hooks") -> RunConfig:
    return RunConfig(image_size=size, batch_size=batch, local_steps=steps, num_rounds=1,
                     grad_sample_mode=mode)


def nonprivate_seconds(size: int, batch: int, steps: int, device: torch.device) -> float:
    """The same GAN step without Opacus (plain Adam, fixed batches)."""
    config = _config(size, batch, steps)
    data = bench_data(size, batch * 20)
    generator, discriminator = build_models(config)
    generator.to(device), discriminator.to(device)
    loss = MinimaxLoss()
    g_opt = torch.optim.Adam(generator.parameters(), 2e-4, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(discriminator.parameters(), 2e-4, betas=(0.5, 0.999))
    images, labels = torch.from_numpy(data.images).to(device), torch.from_numpy(data.labels).to(device)
    start = time.perf_counter()
    for step in range(steps):
        idx = torch.randint(0, len(images), (batch,), device=device)
        real, y = images[idx], labels[idx]
        z, y_fake = torch.randn(batch, config.latent_dim, device=device), torch.randint(0, 2, (batch,), device=device)
        with torch.no_grad():
            fake = generator(z, y_fake)
        scores = discriminator(torch.cat([real, fake]), torch.cat([y, y_fake]))
        per_sample = torch.cat([loss.discriminator_real(scores[:batch]),
                                loss.discriminator_fake(scores[batch:])])
        d_opt.zero_grad(set_to_none=True)
        per_sample.mean().backward()
        d_opt.step()
        g_loss = loss.generator(discriminator(generator(torch.randn_like(z), y_fake), y_fake))
        g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        g_opt.step()
    _sync(device)
    return time.perf_counter() - start


def ours_seconds(size: int, batch: int, steps: int, mode: str, device: torch.device) -> float:
    """This project's ``train_locally`` (DP discriminator, generator through it)."""
    config = _config(size, batch, steps, mode)
    generator, discriminator = build_models(config)
    result = train_locally(generator, discriminator, bench_data(size, batch * 20), config,
                           noise_multiplier=1.0, device=device, seed=0)
    _sync(device)
    return result.seconds


def bare_opacus_seconds(size: int, batch: int, steps: int, device: torch.device,
                        mode: str = "hooks") -> float:
    """The smallest correct Opacus loop for the same step: the overhead baseline."""
    config = _config(size, batch, steps)
    data = bench_data(size, batch * 20)
    start = time.perf_counter()
    generator, discriminator = build_models(config)
    generator.to(device), discriminator.to(device)
    loss = MinimaxLoss()
    g_opt = torch.optim.Adam(generator.parameters(), 2e-4, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(discriminator.parameters(), 2e-4, betas=(0.5, 0.999))
    loader = DataLoader(TensorDataset(torch.from_numpy(data.images), torch.from_numpy(data.labels)),
                        batch_size=batch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        engine = PrivacyEngine()
        made = engine.make_private(
            module=discriminator, optimizer=d_opt, data_loader=loader, noise_multiplier=1.0,
            max_grad_norm=1.0, grad_sample_mode=mode, criterion=torch.nn.BCEWithLogitsLoss())
    if len(made) == 4:  # ghost clipping: the loss must go through Opacus' criterion wrapper
        private_d, d_opt, criterion, loader = made
    else:
        (private_d, d_opt, loader), criterion = made, None
    batches = iter(loader)
    for _ in range(steps):
        try:
            real, y = next(batches)
        except StopIteration:
            batches = iter(loader)
            real, y = next(batches)
        real, y = real.to(device), y.to(device)
        z, y_fake = torch.randn(batch, config.latent_dim, device=device), torch.randint(0, 2, (batch,), device=device)
        with torch.no_grad():
            fake = generator(z, y_fake)
        scores = private_d(torch.cat([real, fake]), torch.cat([y, y_fake]))
        n = real.shape[0]
        d_opt.zero_grad(set_to_none=True)
        if criterion is not None:  # the same minimax loss, as BCE with 1 = real, 0 = fake
            targets = torch.cat([torch.ones(n, device=device), torch.zeros(batch, device=device)])
            criterion(scores, targets).backward()
        else:
            torch.cat([loss.discriminator_real(scores[:n]),
                       loss.discriminator_fake(scores[n:])]).mean().backward()
        d_opt.step()
        private_d.disable_hooks()
        g_loss = loss.generator(private_d(generator(torch.randn_like(z), y_fake), y_fake))
        g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        g_opt.step()
        private_d.enable_hooks()
        d_opt.zero_grad(set_to_none=True)
    _sync(device)
    return time.perf_counter() - start


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def seconds_per_step(fn, repeats: int, size: int, batch: int, steps: int, *args) -> float:
    """Marginal seconds per step: (t(2n) - t(n)) / n, which cancels set-up costs (model
    building, ``make_private``); the fastest of ``repeats`` (a shared CPU is noisy)."""
    fn(size, batch, 2, *args)  # warm-up
    return min((fn(size, batch, 2 * steps, *args) - fn(size, batch, steps, *args)) / steps
               for _ in range(repeats))
