"""The class mix of a site's fake images: uniform, or the site's own released class counts."""

import numpy as np
import pytest
import torch

from client.data import SiteData
from client.dp_training import LocalTrainer, fake_label_weights
from medgan_models.config import ConfigError, RunConfig
from medgan_models.mean_embedding import RandomFourierFeatures, private_mean_embedding
from medgan_models.networks import build_models
from medgan_models.weights import pair_state
from server.checkpoint import load_checkpoint


def skewed_site(lesions: int = 0, n: int = 80) -> SiteData:
    """A site of ``n`` 16x16 images, all class 0 but ``lesions`` of class 1."""
    rng = np.random.default_rng(0)
    labels = np.zeros(n, dtype=np.int64)
    labels[:lesions] = 1
    images = rng.uniform(-1, 1, (n, 1, 16, 16)).astype(np.float32)
    return SiteData(images, labels, 2, ["normal", "lesion"], "test")


def config(**kw) -> RunConfig:
    base = dict(image_size=16, base_channels=8, latent_dim=8, local_steps=4, batch_size=16,
                num_rounds=2, mean_embedding=1.0, mean_embedding_features=64)
    return RunConfig(**{**base, **kw})


def release(data: SiteData, noise: float = 0.2):
    return private_mean_embedding(data.images, data.labels, 2,
                                  RandomFourierFeatures(256, 64, 8.0, 0), noise)


def labels_drawn(setting: RunConfig, data: SiteData, steps: int = 6) -> np.ndarray:
    """Every fake label the generator was asked for in ``steps`` local steps."""
    torch.manual_seed(0)
    generator, discriminator = build_models(setting)
    seen: list[torch.Tensor] = []
    generator.register_forward_pre_hook(lambda _, args: seen.append(args[1].clone()))
    trainer = LocalTrainer(generator, discriminator, data, setting, 1.0, torch.device("cpu"),
                           seed=0, embedding=release(data))
    for _ in range(steps):
        trainer.step()
    return torch.cat(seen).numpy()


def test_site_mix_draws_the_classes_the_site_holds():
    data = skewed_site(lesions=0)  # a site without a single lesion image (scanner C's case)
    site_mix = labels_drawn(config(fake_labels="site"), data)
    uniform = labels_drawn(config(fake_labels="uniform"), data)
    # one fake batch per step, judged by the D step and then trained on by the G step
    assert len(site_mix) == len(uniform) >= 6 * 16
    assert (site_mix == 1).mean() < 0.02  # the site is asked for (next to) no lesions
    assert 0.35 < (uniform == 1).mean() < 0.65


def test_weights_are_the_released_noisy_shares():
    data = skewed_site(lesions=20)
    embedding = release(data, noise=0.0)
    weights = fake_label_weights(config(fake_labels="site"), embedding)
    assert weights.sum().item() == pytest.approx(1.0)
    assert weights.numpy() == pytest.approx([0.75, 0.25], abs=1e-5)
    assert fake_label_weights(config(fake_labels="uniform"), embedding) is None
    assert fake_label_weights(config(fake_labels="site", num_classes=0), embedding) is None
    # no release (mean-embedding 0), or one written before it held its counts: uniform
    assert fake_label_weights(config(fake_labels="site", mean_embedding=0.0), None) is None
    embedding.counts = None
    assert fake_label_weights(config(fake_labels="site"), embedding) is None


def test_config_checks_the_key():
    with pytest.raises(ConfigError, match="fake-labels must be one of"):
        RunConfig.from_mapping({"fake-labels": "balanced"})
    assert RunConfig().fake_labels == "site"  # the default
    assert RunConfig.from_mapping({"fake-labels": "uniform"}).fake_labels == "uniform"


def test_an_older_checkpoint_resumes_with_uniform_fake_labels(tmp_path):
    old_config = config().to_mapping()
    del old_config["fake-labels"]  # written before the option existed
    path = tmp_path / "round_001.pt"
    torch.save({"round": 1, "weights": pair_state(*build_models(config())),
                "run_config": old_config, "seed": 0}, path)
    assert load_checkpoint(path).run_config["fake-labels"] == "uniform"
