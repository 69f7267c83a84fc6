"""`site-batchnorm` and `class-batchnorm`: the generator's BatchNorm conditioned on each
image's site (statistics, scale, shift) and class (scale, shift)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medgan_models.conditional_norm import ConditionalBatchNorm2d
from medgan_models.config import RunConfig
from medgan_models.networks import build_models

# one shared last block (site-output-layer off): the norms alone decide whether codes differ
CONFIG = RunConfig(image_size=16, num_sites=3, batch_size=8, latent_dim=16, base_channels=8,
                   mean_embedding=0.0, site_output_layer=False)


def _randomised(norm: ConditionalBatchNorm2d) -> ConditionalBatchNorm2d:
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
        norm.bias.normal_()
    return norm


def _plain_copy(norm: ConditionalBatchNorm2d, site: int) -> nn.BatchNorm2d:
    """A BatchNorm2d holding ``site``'s row of a norm with one class row."""
    plain = nn.BatchNorm2d(norm.channels, eps=norm.eps, momentum=norm.momentum)
    with torch.no_grad():
        plain.weight.copy_(norm.weight[site, 0])
        plain.bias.copy_(norm.bias[site, 0])
        plain.running_mean.copy_(norm.running_mean[site])
        plain.running_var.copy_(norm.running_var[site])
    return plain


def test_each_image_is_normalised_with_its_own_sites_row():
    torch.manual_seed(0)
    norm = _randomised(ConditionalBatchNorm2d(4, sites=3))
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


def test_classes_share_the_statistics_and_each_has_its_own_scale_and_shift():
    torch.manual_seed(0)
    norm = _randomised(ConditionalBatchNorm2d(4, classes=2))
    x = torch.randn(12, 4, 3, 3) * 2 - 1
    labels = torch.arange(12) % 2
    x_hat = F.batch_norm(x, None, None, training=True, eps=norm.eps)  # the whole batch's
    expected = (x_hat * norm.weight[0, labels][:, :, None, None]
                + norm.bias[0, labels][:, :, None, None])
    torch.testing.assert_close(norm(x, labels=labels), expected)
    with pytest.raises(ValueError, match="pass labels"):
        norm(x)


@pytest.mark.parametrize("axis", ["site", "class"])
def test_a_code_that_scales_the_latent_is_normalised_away_unless_the_norm_has_its_row(axis):
    """Why the options exist: in training mode a shared BatchNorm undoes a site code (or label
    embedding) that scales the latent code, so two sites (classes) get the same images."""
    z = torch.randn(8, 16)
    for conditional in (False, True):
        torch.manual_seed(0)
        generator, _ = build_models(CONFIG.replace(**{f"{axis}_batchnorm": conditional}))
        codes = generator.site_embedding if axis == "site" else generator.label_embedding
        with torch.no_grad():
            codes.weight[0] = 1.0
            codes.weight[1] = 3.0  # the same direction, three times longer

        def draw(row: int) -> torch.Tensor:
            rows = torch.full((8,), row)
            if axis == "site":
                return generator(z, torch.zeros(8, dtype=torch.long), rows)
            return generator(z, rows, torch.zeros(8, dtype=torch.long))

        images = [draw(0), draw(1)]
        torch.testing.assert_close(images[0], images[1], atol=1e-4, rtol=1e-4)
        if conditional:  # row 1's own shift reaches its images only
            with torch.no_grad():
                bias = generator.project[2].bias
                (bias[1] if axis == "site" else bias[:, 1]).add_(1.0)
            moved = [draw(0), draw(1)]
            torch.testing.assert_close(moved[0], images[0])
            assert (moved[1] - images[1]).abs().mean() > 1e-2


def test_the_norms_are_conditional_only_where_the_model_is():
    def norms(config: RunConfig) -> list[ConditionalBatchNorm2d]:
        generator, _ = build_models(config)
        return [m for m in generator.modules() if isinstance(m, ConditionalBatchNorm2d)]

    assert not norms(CONFIG.replace(site_batchnorm=True, num_sites=0))
    assert not norms(CONFIG.replace(class_batchnorm=True, num_classes=0))
    both = norms(CONFIG.replace(site_batchnorm=True, class_batchnorm=True))
    assert both and all((m.sites, m.classes) == (3, 2) for m in both)
    # every row starts from the same scale, so the rows differ only by what they learn
    assert all(torch.equal(m.weight[0, 0], m.weight[2, 1]) for m in both)
