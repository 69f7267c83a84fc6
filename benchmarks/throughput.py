"""Local training speed: non-private vs DP-SGD (per gradient mode), ours vs a bare Opacus loop.

Every loop runs the same GAN step (one discriminator update on a real batch plus an equal fake
batch, one generator update) on the same models and data, in the same process. Each loop is
set up once (models, ``make_private``) and then timed step by step, round-robin over the loops:
step 1 of every loop, then step 2 of every loop, ... (in a shuffled order each time). A burst of load from another process
therefore hits every loop alike, and each loop's figure is its median step time, which a few
slow steps do not move. Set-up is never timed.
"""

from __future__ import annotations

import random
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
from opacus import PrivacyEngine
from torch.utils.data import DataLoader, TensorDataset

from client.data import SiteData
from client.dp_training import LocalTrainer
from medgan_models.config import RunConfig
from medgan_models.losses import MinimaxLoss
from medgan_models.networks import build_models


def bench_data(size: int, n: int, seed: int = 0) -> SiteData:
    """Random images in [-1, 1] with two classes (speed does not depend on content)."""
    rng = np.random.default_rng(seed)
    return SiteData(rng.uniform(-1, 1, (n, 1, size, size)).astype(np.float32),
                    rng.integers(0, 2, n).astype(np.int64), 2, ["a", "b"], "benchmark")


def _config(size: int, batch: int, mode: str = "hooks") -> RunConfig:
    """Every loop's models: the plain GAN step, without the auxiliary classifier head, so that
    the bare Opacus loop (a BCE criterion on one score) runs exactly the same models (nor the
    mean-embedding term, which the bare loop lacks)."""
    return RunConfig(image_size=size, batch_size=batch, local_steps=1, num_rounds=1,
                     grad_sample_mode=mode, auxiliary_classifier=0.0, mean_embedding=0.0)


class NonPrivateLoop:
    """The same GAN step without Opacus (plain Adam, fixed-size batches)."""

    def __init__(self, size: int, batch: int, device: torch.device) -> None:
        config = _config(size, batch)
        data = bench_data(size, batch * 20)
        self.batch, self.latent_dim, self.device = batch, config.latent_dim, device
        self.generator, self.discriminator = (m.to(device) for m in build_models(config))
        self.loss = MinimaxLoss()
        self.g_opt = torch.optim.Adam(self.generator.parameters(), 2e-4, betas=(0.5, 0.999))
        self.d_opt = torch.optim.Adam(self.discriminator.parameters(), 2e-4, betas=(0.5, 0.999))
        self.images = torch.from_numpy(data.images).to(device)
        self.labels = torch.from_numpy(data.labels).to(device)

    def step(self) -> None:
        batch, device, loss = self.batch, self.device, self.loss
        idx = torch.randint(0, len(self.images), (batch,), device=device)
        real, y = self.images[idx], self.labels[idx]
        z = torch.randn(batch, self.latent_dim, device=device)
        y_fake = torch.randint(0, 2, (batch,), device=device)
        fake = self.generator(z, y_fake)  # reused by the generator step, as medgan-fl does
        scores = self.discriminator(torch.cat([real, fake.detach()]), torch.cat([y, y_fake]))
        per_sample = torch.cat([loss.discriminator_real(scores[:batch]),
                                loss.discriminator_fake(scores[batch:])])
        self.d_opt.zero_grad(set_to_none=True)
        per_sample.mean().backward()
        self.d_opt.step()
        self.discriminator.requires_grad_(False)  # as medgan-fl's generator step does
        g_loss = loss.generator(self.discriminator(fake, y_fake))
        self.g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        self.g_opt.step()
        self.discriminator.requires_grad_(True)


class OurLoop:
    """This project's local training (``client.dp_training.LocalTrainer``), one step a call."""

    def __init__(self, size: int, batch: int, device: torch.device, mode: str) -> None:
        config = _config(size, batch, mode)
        generator, discriminator = build_models(config)
        self.trainer = LocalTrainer(generator, discriminator, bench_data(size, batch * 20),
                                    config, noise_multiplier=1.0, device=device, seed=0)

    def step(self) -> None:
        self.trainer.step()


class BareOpacusLoop:
    """The smallest correct Opacus loop for the same step: the overhead baseline."""

    def __init__(self, size: int, batch: int, device: torch.device, mode: str = "hooks") -> None:
        config = _config(size, batch)
        data = bench_data(size, batch * 20)
        self.batch, self.latent_dim, self.device = batch, config.latent_dim, device
        self.generator, discriminator = (m.to(device) for m in build_models(config))
        self.loss = MinimaxLoss()
        self.g_opt = torch.optim.Adam(self.generator.parameters(), 2e-4, betas=(0.5, 0.999))
        d_opt = torch.optim.Adam(discriminator.parameters(), 2e-4, betas=(0.5, 0.999))
        loader = DataLoader(TensorDataset(torch.from_numpy(data.images),
                                          torch.from_numpy(data.labels)), batch_size=batch)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            made = PrivacyEngine().make_private(
                module=discriminator, optimizer=d_opt, data_loader=loader, noise_multiplier=1.0,
                max_grad_norm=1.0, grad_sample_mode=mode,
                criterion=torch.nn.BCEWithLogitsLoss())
        if len(made) == 4:  # ghost clipping: the loss must go through Opacus' criterion wrapper
            self.private_d, self.d_opt, self.criterion, self.loader = made
        else:
            (self.private_d, self.d_opt, self.loader), self.criterion = made, None
        self.batches = iter(self.loader)
        warnings.filterwarnings("ignore", message="Full backward hook is firing")

    def step(self) -> None:
        batch, device, loss = self.batch, self.device, self.loss
        try:
            real, y = next(self.batches)
        except StopIteration:
            self.batches = iter(self.loader)
            real, y = next(self.batches)
        real, y = real.to(device), y.to(device)
        z = torch.randn(batch, self.latent_dim, device=device)
        y_fake = torch.randint(0, 2, (batch,), device=device)
        fake = self.generator(z, y_fake)  # reused by the generator step, as medgan-fl does
        scores = self.private_d(torch.cat([real, fake.detach()]), torch.cat([y, y_fake]))
        n = real.shape[0]
        self.d_opt.zero_grad(set_to_none=True)
        if self.criterion is not None:  # the same minimax loss, as BCE with 1 = real, 0 = fake
            targets = torch.cat([torch.ones(n, device=device), torch.zeros(batch, device=device)])
            self.criterion(scores, targets).backward()
        else:
            torch.cat([loss.discriminator_real(scores[:n]),
                       loss.discriminator_fake(scores[n:])]).mean().backward()
        self.d_opt.step()
        self.private_d.disable_hooks()
        self.private_d.requires_grad_(False)  # the same generator step as medgan-fl's
        g_loss = loss.generator(self.private_d(fake, y_fake))
        self.g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        self.g_opt.step()
        self.private_d.requires_grad_(True)
        self.private_d.enable_hooks()
        self.d_opt.zero_grad(set_to_none=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def interleaved_step_seconds(loops: dict[str, Callable[[], object]], steps: int,
                             device: torch.device, warmup: int = 2) -> dict[str, float | str]:
    """Median seconds per step of each loop, timed round-robin (see the module docstring).

    ``loops`` maps a name to a factory of an object with ``step()``; a loop whose set-up or
    step raises gets ``"fails: ..."`` instead of a time and leaves the others running.
    """
    built: dict[str, object] = {}
    out: dict[str, float | str] = {}
    for name, make in loops.items():
        try:
            built[name] = make()
        except Exception as error:  # a mode Opacus cannot apply to this step
            out[name] = f"fails: {type(error).__name__}: {str(error)[:80]}"
    times: dict[str, list[float]] = {name: [] for name in built}
    order = random.Random(0)
    for i in range(warmup + steps):
        names = list(built)
        order.shuffle(names)  # no loop always runs right after the same other one
        for name in names:
            loop = built[name]
            try:
                _sync(device)
                start = time.perf_counter()
                loop.step()
                _sync(device)
            except Exception as error:
                out[name] = f"fails: {type(error).__name__}: {str(error)[:80]}"
                del built[name]
                continue
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    for name in built:
        out[name] = statistics.median(times[name])
    return {name: out[name] for name in loops}
