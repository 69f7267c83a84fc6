"""A site's one-off private mean embedding (``mean-embedding``): made once, kept, reused.

The release is a Gaussian mechanism on the site's training images (see
``medgan_models.mean_embedding``). It is made at the site's first training round with secret
randomness, recorded in the privacy ledger (and the ledger saved) BEFORE it is written to disk
or used, and read back from the site's state folder in every later round: a second release
would spend budget again. A crash between the ledger entry and the file costs a second,
recorded release, never an unrecorded one. The file never leaves the site.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch
from torch import nn

from client.data import SiteData
from client.privacy_ledger import MEAN_EMBEDDING, LedgerEntry, PrivacyLedger
from medgan_models.state_files import torch_save_atomically
from medgan_models.config import RunConfig
from medgan_models.mean_embedding import (
    JointFeatures,
    MeanEmbedding,
    RandomFourierFeatures,
    TextureFeatures,
    private_mean_embedding,
)


def feature_map(config: RunConfig) -> nn.Module:
    """The run's feature map: random Fourier features of the pixels, beside a random conv
    net's response statistics with ``mean-embedding-texture``; the same at every site (seeded
    by the run seed)."""
    pixels = config.channels * config.image_size ** 2
    fourier = RandomFourierFeatures(pixels, config.mean_embedding_features,
                                    config.mean_embedding_bandwidth * pixels ** 0.5, config.seed)
    if not config.mean_embedding_texture:
        return fourier
    return JointFeatures(fourier, TextureFeatures(config.channels, config.seed))


def embedding_path(ledger_dir: Path, config: RunConfig) -> Path:
    """Where the release lives; its name holds the settings it was made with, so a run with
    other settings makes (and records) a release of its own instead of misreading this one."""
    return ledger_dir / (f"mean_embedding_f{config.mean_embedding_features}"
                         f"_b{config.mean_embedding_bandwidth:g}_n{config.mean_embedding_noise:g}"
                         f"{'_texture' if config.mean_embedding_texture else ''}"
                         f"_s{config.seed}_{config.image_size}px.pt")


def release_entry(config: RunConfig, server_round: int) -> LedgerEntry:
    """The ledger entry of one release: noise multiplier, sample rate 1, one step."""
    return LedgerEntry(server_round, config.mean_embedding_noise, 1.0, 1, MEAN_EMBEDDING)


def needs_release(config: RunConfig, ledger_dir: Path) -> bool:
    """Whether this round must make the release (it is on and none was kept)."""
    return config.mean_embedding > 0 and not embedding_path(ledger_dir, config).exists()


def make_release(config: RunConfig, data: SiteData,
                 noise: torch.Generator | None = None) -> MeanEmbedding | None:
    """One release of ``data``'s mean embedding (None when ``mean-embedding`` is off). Not
    recorded anywhere: a site calls :func:`site_embedding`; benchmarks and tests call this."""
    if config.mean_embedding <= 0:
        return None
    num_classes = config.num_classes if config.conditional else 0
    return private_mean_embedding(data.images, data.labels, num_classes, feature_map(config),
                                  config.mean_embedding_noise, noise=noise)


def site_embedding(config: RunConfig, data: SiteData, ledger: PrivacyLedger,
                   ledger_file: Path, server_round: int) -> MeanEmbedding | None:
    """The site's mean embedding: read back, or released now (ledger entry first). None when
    ``mean-embedding`` is off."""
    if config.mean_embedding <= 0:
        return None
    path = embedding_path(ledger_file.parent, config)
    if not path.exists():
        ledger.add(release_entry(config, server_round))
        ledger.save(ledger_file)
        secret = torch.Generator().manual_seed(int.from_bytes(os.urandom(8), "little"))
        embedding = make_release(config, data, noise=secret)
        torch_save_atomically({"means": embedding.means, "weights": embedding.weights,
                               "counts": embedding.counts}, path)
        return embedding
    return load_release(path, config)


def load_release(path: Path, config: RunConfig) -> MeanEmbedding:
    """A kept release read back (nothing recorded: reading it spends no budget); a clear
    error naming the file when it is unreadable."""
    try:
        saved = torch.load(path, weights_only=True)
        return MeanEmbedding(feature_map(config), saved["means"], saved["weights"],
                             saved.get("counts"))
    except (OSError, RuntimeError, KeyError, ValueError, pickle.UnpicklingError) as error:
        raise ValueError(f"mean-embedding release {path} is unreadable ({error}); delete it "
                         "to make a new one (the ledger will record that release too)") from None
