"""`site-output-layer` and `site-batchnorm`: with site codes, each site owns a slice of the
generator's last block, or a row of each of its BatchNorms."""

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord

from client.data import SiteData
from client.dp_training import train_locally
from medgan_models.config import RunConfig
from medgan_models.networks import build_models
from medgan_models.weights import GENERATOR_PREFIX, pair_state
from server.checkpoint import load_checkpoint
from server.reply_validation import SiteReply
from server.site_codes import take_site_rows

CONFIG = RunConfig(image_size=16, num_sites=3, site_output_layer=True, batch_size=8,
                   local_steps=2, latent_dim=16, base_channels=8, grad_sample_mode="hooks",
                   mean_embedding=0.0)
# each option alone: what a site owns besides its code
SITE_PARTS = {"output-layer": CONFIG,
              "batchnorm": CONFIG.replace(site_output_layer=False, site_batchnorm=True)}


def _slice(tensor: torch.Tensor, dim: int, width: int, site: int) -> torch.Tensor:
    return tensor.movedim(dim, 0)[site * width:(site + 1) * width]


@pytest.mark.parametrize("upsampling,noise", [("nearest", False), ("nearest", True),
                                              ("transpose", True)])
def test_an_images_pixels_come_from_its_own_sites_slice_only(upsampling, noise):
    generator, _ = build_models(CONFIG.replace(generator_upsampling=upsampling,
                                               generator_noise=noise))
    owned = generator.site_owned()
    assert any(name.startswith("site_output.") for name in owned)
    sites = torch.tensor([0, 1, 2, 1])
    generator.zero_grad()
    images = generator(torch.randn(4, 16), torch.zeros(4, dtype=torch.long), sites)
    assert images.shape == (4, 1, 16, 16) and images.abs().max() <= 1
    # a batch of site-1 images: every owned parameter's gradient lies in site 1's slice
    generator.zero_grad()
    generator(torch.randn(4, 16), torch.zeros(4, dtype=torch.long),
              torch.full((4,), 1)).sum().backward()
    params = dict(generator.named_parameters())
    for name, (dim, width) in owned.items():
        grad = params[name].grad
        assert _slice(grad, dim, width, 1).abs().sum() > 0, name
        for other in (0, 2):
            assert _slice(grad, dim, width, other).abs().sum() == 0, name


@pytest.mark.parametrize("part", SITE_PARTS)
def test_without_site_codes_the_option_changes_nothing(part):
    generator, _ = build_models(SITE_PARTS[part].replace(num_sites=0))
    plain, _ = build_models(CONFIG.replace(num_sites=0, site_output_layer=False))
    assert generator.site_output is None and generator.site_owned() == {}
    assert generator.state_dict().keys() == plain.state_dict().keys()


@pytest.mark.parametrize("part", SITE_PARTS)
def test_a_site_trains_only_its_own_slice(part):
    config = SITE_PARTS[part]
    generator, discriminator = build_models(config)
    owned = generator.site_owned()
    assert len(owned) > 1, "the site owns more than its code"
    before = {k: v.detach().clone() for k, v in generator.state_dict().items()}
    data = SiteData(np.random.default_rng(0).uniform(-1, 1, (32, 1, 16, 16)).astype(np.float32),
                    np.arange(32) % 2, 2, ["a", "b"], "test")
    train_locally(generator, discriminator, data, config, 1.0, torch.device("cpu"), seed=0,
                  site_code=2)
    after = generator.state_dict()  # parameters and running statistics
    for name, (dim, width) in owned.items():
        assert not torch.equal(_slice(after[name], dim, width, 2),
                               _slice(before[name], dim, width, 2)), name
        for other in (0, 1):
            torch.testing.assert_close(_slice(after[name], dim, width, other),
                                       _slice(before[name], dim, width, other))


@pytest.mark.parametrize("part", SITE_PARTS)
def test_the_server_takes_each_sites_slices_from_that_site(part):
    generator, discriminator = build_models(SITE_PARTS[part])
    owned = generator.site_owned()
    reference = pair_state(generator, discriminator)
    sent = []
    for code in (0, 2):  # site 1 did not train this round
        moved = {k: v.clone() for k, v in reference.items()}
        for name, (dim, width) in owned.items():
            _slice(moved[GENERATOR_PREFIX + name], dim, width, code).add_(1.0 + code)
        sent.append(moved)
    aggregate = ArrayRecord({k: Array(((sent[0][k] + sent[1][k]) / 2).numpy())
                             for k in reference})
    replies = [SiteReply(i, f"site-{i}", "trained", "",
                         {"num-examples": 10, "epsilon": 1.0, "site-code": code},
                         {k: v.numpy() for k, v in state.items()})
               for i, (code, state) in enumerate(zip((0, 2), sent, strict=True))]
    merged = take_site_rows(aggregate, replies, 3, owned)
    for name, (dim, width) in owned.items():
        key = GENERATOR_PREFIX + name
        got = torch.from_numpy(merged[key].numpy())
        for code, shift in ((0, 1.0), (1, 0.0), (2, 3.0)):
            torch.testing.assert_close(_slice(got, dim, width, code),
                                       _slice(reference[key], dim, width, code) + shift)


def test_an_older_checkpoint_loads_with_one_shared_last_block(tmp_path):
    generator, discriminator = build_models(CONFIG.replace(site_output_layer=False))
    old_config = CONFIG.replace(site_output_layer=False).to_mapping()
    del old_config["site-output-layer"]  # written before the option existed
    path = tmp_path / "round_001.pt"
    torch.save({"round": 1, "weights": pair_state(generator, discriminator),
                "run_config": old_config, "seed": 0}, path)
    loaded = load_checkpoint(path)
    assert loaded.run_config["site-output-layer"] is False
    fresh, _ = build_models(RunConfig.from_mapping(loaded.run_config))
    fresh.load_state_dict({k.removeprefix(GENERATOR_PREFIX): v
                           for k, v in loaded.weights.items()
                           if k.startswith(GENERATOR_PREFIX)})
