"""`site-batchnorm`: the generator's BatchNorm keeps a scale, shift and statistics per site."""

import torch
from torch import nn

from medgan_models.config import RunConfig
from medgan_models.networks import build_models
from medgan_models.site_norm import SiteBatchNorm2d

CONFIG = RunConfig(image_size=16, num_sites=3, batch_size=8, latent_dim=16, base_channels=8,
                   mean_embedding=0.0)


def _plain_copy(norm: SiteBatchNorm2d, site: int) -> nn.BatchNorm2d:
    """A BatchNorm2d holding ``site``'s row of ``norm``."""
    plain = nn.BatchNorm2d(norm.channels, eps=norm.eps, momentum=norm.momentum)
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(plain, name).copy_(getattr(norm, name)[site])
    return plain


def test_each_image_is_normalised_with_its_own_sites_row():
    torch.manual_seed(0)
    norm = SiteBatchNorm2d(4, num_sites=3)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
        norm.bias.normal_()
    x = torch.randn(10, 4, 3, 3) * 3 + 1
    sites = torch.tensor([0, 2, 2, 0, 0, 2, 0, 2, 0, 0])
    plains = [_plain_copy(norm, s) for s in range(3)]
    out = norm(x, sites)  # training mode: each site's batch statistics
    for site in (0, 2):
        rows = sites == site
        torch.testing.assert_close(out[rows], plains[site](x[rows]))
        torch.testing.assert_close(norm.running_mean[site], plains[site].running_mean)
        torch.testing.assert_close(norm.running_var[site], plains[site].running_var)
    assert torch.equal(norm.running_mean[1], torch.zeros(4)), "an absent site's row is kept"
    norm.eval()
    for plain in plains:
        plain.eval()
    out = norm(x, sites)
    for site in (0, 2):
        torch.testing.assert_close(out[sites == site], plains[site](x[sites == site]))


def test_a_site_code_that_scales_the_latent_is_normalised_away_unless_norms_are_per_site():
    """Why the option exists: in training mode a shared BatchNorm undoes a site code that
    scales the latent code, so two sites with the same draws get the same images."""
    z, labels = torch.randn(8, 16), torch.zeros(8, dtype=torch.long)
    for site_batchnorm in (False, True):
        torch.manual_seed(0)
        generator, _ = build_models(CONFIG.replace(site_batchnorm=site_batchnorm))
        with torch.no_grad():
            generator.site_embedding.weight[0] = 1.0
            generator.site_embedding.weight[1] = 3.0  # the same direction, three times longer
        images = [generator(z, labels, torch.full((8,), s)) for s in (0, 1)]
        torch.testing.assert_close(images[0], images[1], atol=1e-4, rtol=1e-4)
        if site_batchnorm:  # per-site rows: a site's own shift reaches its images only
            with torch.no_grad():
                generator.project[2].bias[1] += 1.0
            moved = [generator(z, labels, torch.full((8,), s)) for s in (0, 1)]
            torch.testing.assert_close(moved[0], images[0])
            assert (moved[1] - images[1]).abs().mean() > 1e-2


def test_the_norms_are_per_site_only_with_site_codes():
    with_codes, _ = build_models(CONFIG.replace(site_batchnorm=True))
    without, _ = build_models(CONFIG.replace(site_batchnorm=True, num_sites=0))
    assert any(isinstance(m, SiteBatchNorm2d) for m in with_codes.modules())
    assert not any(isinstance(m, SiteBatchNorm2d) for m in without.modules())
    # every site starts from the same scale, so the sites differ only by what they learn
    for module in with_codes.modules():
        if isinstance(module, SiteBatchNorm2d):
            assert torch.equal(module.weight[0], module.weight[2])
