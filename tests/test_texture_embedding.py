"""The mean embedding's texture features (``mean-embedding-texture``): a random conv net's
response statistics beside the pixels' random Fourier features."""

import numpy as np
import torch
import torch.nn.functional as F

from client.data import SiteData
from client.embedding_release import embedding_path, feature_map, site_embedding
from client.privacy_ledger import MEAN_EMBEDDING, PrivacyLedger
from client.site import site_config
from client.training_round import ledger_path
from medgan_models.config import RunConfig
from medgan_models.mean_embedding import (
    JointFeatures,
    RandomFourierFeatures,
    TextureFeatures,
    private_mean_embedding,
)


def grainy_heads(n: int, seed: int) -> torch.Tensor:
    """(n, 1, 16, 16) discs of varied radius with pixel grain, in [-1, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:16, :16] - 7.5
    radius = rng.uniform(4, 7, n)
    disc = (np.hypot(yy, xx)[None] < radius[:, None, None]).astype(np.float32)
    grain = rng.normal(0, 0.15, disc.shape).astype(np.float32)
    return torch.from_numpy(np.clip(disc * 1.4 - 0.7 + grain, -1, 1)[:, None])


def blur(images: torch.Tensor, side: float = 1 / 3) -> torch.Tensor:
    """A separable 3-tap blur with weight ``side`` on each neighbour (1/3: a box blur; edge
    pixels replicated): the same heads, softer, with less grain."""
    kernel = torch.tensor([side, 1 - 2 * side, side])
    x = F.pad(images, (1, 1, 1, 1), mode="replicate")
    return F.conv2d(F.conv2d(x, kernel.view(1, 1, 1, 3)), kernel.view(1, 1, 3, 1))


def test_texture_rows_have_norm_one_and_the_network_depends_on_the_seed_only():
    images = grainy_heads(10, 0)
    phi = TextureFeatures(1, 3)(images)
    assert phi.shape == (10, TextureFeatures(1, 3).dim)
    assert torch.allclose(phi.norm(dim=1), torch.ones(10), atol=1e-5)  # sensitivity 1
    assert torch.equal(phi, TextureFeatures(1, 3)(images))  # every site builds the same one
    assert not torch.equal(phi, TextureFeatures(1, 4)(images))
    joint = JointFeatures(RandomFourierFeatures(256, 64, 8.0, 3), TextureFeatures(1, 3))
    both = joint(images)
    assert both.shape == (10, 64 + TextureFeatures(1, 3).dim) and joint.dim == both.shape[1]
    assert torch.allclose(both.norm(dim=1), torch.ones(10), atol=1e-5)


def test_texture_features_see_a_softer_batch_well_beyond_the_sampling_spread():
    """What the option is for: a generator whose heads are right but too soft. The gap between
    mean embeddings of real and slightly blurred images, against two real halves' gap."""
    first, second = grainy_heads(400, 1), grainy_heads(400, 2)
    features = TextureFeatures(1, 0)
    with torch.no_grad():
        reference = features(first).mean(0)
        sampling = (features(second).mean(0) - reference).norm()
        softer = (features(blur(second, 0.125)).mean(0) - reference).norm()
    assert softer > 3 * sampling


def test_the_loss_pulls_blurred_images_toward_the_grain():
    """The release with texture on: a blurred batch scores worse than a real one, and the
    generator gets a gradient."""
    images = grainy_heads(300, 5).numpy()
    labels = np.zeros(300, dtype=np.int64)
    joint = JointFeatures(RandomFourierFeatures(256, 128, 8.0, 0), TextureFeatures(1, 0))
    release = private_mean_embedding(images, labels, 1, joint, noise_multiplier=1.0,
                                     noise=torch.Generator().manual_seed(0))
    fresh = grainy_heads(128, 6)
    assert release.loss(fresh, None) < 0.7 * release.loss(blur(fresh), None)
    fake = blur(fresh).requires_grad_(True)
    release.loss(fake, None).backward()
    assert fake.grad.abs().sum() > 0


def test_the_option_makes_a_release_of_its_own(tmp_path):
    run = {"image-size": 16, "base-channels": 8, "latent-dim": 8, "batch-size": 8,
           "mean-embedding-features": 64, "out-dir": str(tmp_path)}
    plain, site = site_config(run, {"partition-id": 0, "num-partitions": 1})
    texture = plain.replace(mean_embedding_texture=True)
    assert isinstance(feature_map(texture), JointFeatures)
    assert isinstance(feature_map(plain), RandomFourierFeatures)
    assert embedding_path(site.ledger_dir, plain) != embedding_path(site.ledger_dir, texture)
    images = grainy_heads(40, 7).numpy()
    data = SiteData(images, np.zeros(40, dtype=np.int64), 2, ["a", "b"], "test")
    ledger = PrivacyLedger()
    first = site_embedding(texture, data, ledger, ledger_path(site), server_round=1)
    again = site_embedding(texture, data, ledger, ledger_path(site), server_round=2)
    assert [e.mechanism for e in ledger.entries] == [MEAN_EMBEDDING]  # one release, kept
    assert torch.equal(first.means, again.means) and first.means.shape[1] == 64 + 224
    assert RunConfig.from_mapping({"mean-embedding-texture": True}).mean_embedding_texture


def test_each_feature_map_has_its_own_distance_in_the_loss():
    """The texture gaps are ~10x smaller than the pixels' ones: in one joint norm they would
    hardly steer the generator, so the loss adds each map's distance."""
    images = grainy_heads(200, 8).numpy()
    joint = JointFeatures(RandomFourierFeatures(256, 128, 8.0, 0), TextureFeatures(1, 0))
    release = private_mean_embedding(images, np.zeros(200, dtype=np.int64), 1, joint, 0.0)
    fake = blur(grainy_heads(64, 9))
    with torch.no_grad():
        gap = joint(fake).mean(0) - release.means[0]
        pixels, texture = gap.split(joint.blocks)
        assert torch.isclose(release.loss(fake, None), pixels.norm() + texture.norm())
