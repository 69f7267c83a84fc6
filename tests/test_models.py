"""Networks, losses and the run config."""

import tomllib
from pathlib import Path

import pytest
import torch
from opacus.validators import ModuleValidator

from medgan_models.config import ConfigError, RunConfig
from medgan_models.losses import HingeLoss, MinimaxLoss, WassersteinLoss, make_loss
from medgan_models.networks import Discriminator, Generator, build_models
from medgan_models.weights import load_pair_state, pair_state

SIZES = (16, 32, 64, 128)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("channels", (1, 3))
@pytest.mark.parametrize("num_classes,upsampling", [(0, "transpose"), (2, "transpose"),
                                                    (2, "nearest")])
def test_shapes_for_every_size_and_channel_count(size, channels, num_classes, upsampling):
    generator = Generator(size, channels, latent_dim=8, num_classes=num_classes, base_channels=8,
                          upsampling=upsampling)
    discriminator = Discriminator(size, channels, num_classes=num_classes, base_channels=8)
    labels = torch.tensor([0, 1, 1]) if num_classes else None
    images = generator(torch.randn(3, 8), labels)
    assert images.shape == (3, channels, size, size)
    assert images.min() >= -1 and images.max() <= 1
    assert discriminator(images, labels).shape == (3,)


@pytest.mark.parametrize("size", SIZES)
def test_opacus_validator_accepts_the_discriminator(size):
    _, discriminator = build_models(RunConfig(image_size=size, base_channels=8))
    assert ModuleValidator.validate(discriminator, strict=False) == []
    generator, _ = build_models(RunConfig(image_size=size, base_channels=8))
    assert ModuleValidator.validate(generator, strict=False) != []  # BatchNorm: not private


def test_discriminator_channels_set_the_private_models_width_only():
    generator, narrow = build_models(RunConfig(image_size=16, base_channels=8,
                                               discriminator_channels=4))
    _, same = build_models(RunConfig(image_size=16, base_channels=8))
    assert narrow.features[0].out_channels == 4 and same.features[0].out_channels == 8
    assert sum(p.numel() for p in narrow.parameters()) < sum(p.numel() for p in same.parameters())
    assert generator.body is not None and ModuleValidator.validate(narrow, strict=False) == []


def test_unsupported_size_is_refused_by_name():
    with pytest.raises(ValueError, match="image size 20 is not supported"):
        Generator(image_size=20)


def test_conditional_models_require_labels():
    generator, discriminator = build_models(RunConfig(num_classes=2, image_size=16))
    with pytest.raises(ValueError, match="pass labels"):
        generator(torch.randn(2, generator.latent_dim))
    with pytest.raises(ValueError, match="pass labels"):
        discriminator(torch.randn(2, 1, 16, 16))


def test_labels_change_the_generated_image():
    torch.manual_seed(0)
    generator, _ = build_models(RunConfig(num_classes=2, image_size=16))
    generator.eval()
    z = torch.randn(1, generator.latent_dim).repeat(2, 1)
    images = generator(z, torch.tensor([0, 1]))
    assert not torch.allclose(images[0], images[1])


def test_losses_are_per_sample_and_point_the_right_way():
    loss = MinimaxLoss()
    good, bad = torch.tensor([5.0]), torch.tensor([-5.0])
    assert loss.discriminator_real(torch.zeros(4)).shape == (4,)
    assert loss.discriminator_real(good) < loss.discriminator_real(bad)
    assert loss.discriminator_fake(bad) < loss.discriminator_fake(good)
    assert loss.generator(good) < loss.generator(bad)
    wasserstein = WassersteinLoss()
    assert wasserstein.discriminator_real(good) < wasserstein.discriminator_real(bad)
    hinge = HingeLoss()
    assert hinge.discriminator_real(bad) > hinge.discriminator_real(torch.tensor([0.5])) > 0
    assert hinge.discriminator_fake(bad) == 0 < hinge.discriminator_fake(good)
    assert hinge.generator(good) < hinge.generator(bad)
    # beyond the margin, a sample gives the discriminator no gradient
    scores = torch.tensor([2.0, 0.5], requires_grad=True)
    hinge.discriminator_real(scores).sum().backward()
    assert scores.grad.tolist() == [0.0, -1.0]
    assert isinstance(make_loss("hinge"), HingeLoss)


def test_wasserstein_clips_discriminator_weights():
    _, discriminator = build_models(RunConfig(image_size=16, loss="wasserstein"))
    with torch.no_grad():
        for p in discriminator.parameters():
            p.fill_(3.0)
    make_loss("wasserstein", 0.05).after_discriminator_step(discriminator)
    assert max(p.abs().max().item() for p in discriminator.parameters()) == pytest.approx(0.05)


def test_pair_state_round_trips_both_models():
    config = RunConfig(image_size=16, num_classes=2)
    torch.manual_seed(1)
    g1, d1 = build_models(config)
    torch.manual_seed(2)
    g2, d2 = build_models(config)
    state = pair_state(g1, d1)
    assert any(k.startswith("generator.") for k in state)
    assert any(k.startswith("discriminator.") for k in state)
    load_pair_state(g2, d2, {k: v.numpy().astype("float64") for k, v in state.items()})
    for a, b in zip(pair_state(g2, d2).values(), state.values(), strict=True):
        assert a.dtype == b.dtype and torch.allclose(a, b)


def test_unknown_config_key_suggests_the_closest():
    with pytest.raises(ConfigError, match="unknown config key 'num-round'.*'num-rounds'"):
        RunConfig.from_mapping({"num-round": 3})


@pytest.mark.parametrize("key,value,match", [
    ("image-size", 20, "image-size 20 is not supported"),
    ("loss", "softplus", "loss must be one of"),
    ("delta", 2.0, "delta must be in"),
    ("num-rounds", "many", "expects int"),
    ("generator-upsampling", "bilinear", "generator-upsampling must be one of"),
])
def test_bad_config_values_are_named(key, value, match):
    with pytest.raises(ConfigError, match=match):
        RunConfig.from_mapping({key: value})


def test_pyproject_run_config_matches_the_defaults():
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    declared = pyproject["tool"]["flwr"]["app"]["config"]
    assert RunConfig.from_mapping(declared).to_mapping() == {
        **RunConfig().to_mapping(), **declared}
    assert declared == {k: v for k, v in RunConfig().to_mapping().items() if k in declared}


def test_a_checkpoint_from_before_generator_upsampling_loads_as_transposed(tmp_path):
    from server.checkpoint import Checkpoint, load_checkpoint, save_checkpoint

    old_config = RunConfig(image_size=16, base_channels=8).to_mapping()
    del old_config["generator-upsampling"]
    path = save_checkpoint(tmp_path, Checkpoint(1, {}, old_config, 0))
    config = RunConfig.from_mapping(load_checkpoint(path).run_config)
    assert config.generator_upsampling == "transpose"


def test_noise_inputs_start_silent_then_vary_images_of_one_code_and_sampling_repeats():
    from medgan_models.sampling import sample_images

    cfg = RunConfig(image_size=16, base_channels=8, latent_dim=8, generator_noise=True)
    generator, _ = build_models(cfg)
    generator.eval()
    z, labels = torch.randn(1, 8).repeat(4, 1), torch.tensor([1, 1, 1, 1])
    same = generator(z, labels)
    assert torch.allclose(same[0], same[1])  # zero-initialised noise scales: off at first
    with torch.no_grad():
        for module in generator.modules():
            if hasattr(module, "weight") and type(module).__name__ == "NoiseInjection":
                module.weight.fill_(0.5)
        varied = generator(z, labels)
    assert (varied[0] - varied[1]).abs().max() > 1e-3  # one code, several images
    first = sample_images(generator, labels, 4, seed=3)
    assert torch.equal(first, sample_images(generator, labels, 4, seed=3))
    assert not torch.equal(first, sample_images(generator, labels, 4, seed=4))
    plain, _ = build_models(cfg.replace(generator_noise=False))
    assert len(generator.state_dict()) > len(plain.state_dict())
