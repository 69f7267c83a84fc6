"""DCGAN-style generator and discriminator for square images (16-128 px, 1 or 3 channels).

The generator doubles its resolution by nearest-neighbour upsampling and a 3x3 convolution by
default (DCGAN's strided transposed convolutions, ``upsampling="transpose"``, collapsed to one
grainy image here). Both are optionally class-conditional: the generator multiplies the latent
code by a label embedding (as in AC-GAN; concatenation was seen here to let the generator ignore
the code and collapse to one image per class); the discriminator uses a projection head (Miyato
& Koyama, 2018) and, optionally, an auxiliary classifier head (AC-GAN, Odena et al., 2017)
whose class logits train it to recognise each class on real images and push the generator to
draw what makes a class (e.g. a lesion). The discriminator sees real data, so it is the part
trained with DP-SGD: it uses GroupNorm, never BatchNorm, and passes Opacus'
``ModuleValidator``. The generator never sees real data and may keep BatchNorm.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import SUPPORTED_IMAGE_SIZES, UPSAMPLINGS, RunConfig, resampling_blocks
from .conditional_norm import ConditionalBatchNorm2d


def _num_blocks(image_size: int) -> int:
    """Number of x2 resampling blocks between 4x4 and ``image_size``."""
    if image_size not in SUPPORTED_IMAGE_SIZES:
        raise ValueError(
            f"image size {image_size} is not supported; use one of {SUPPORTED_IMAGE_SIZES}"
        )
    return resampling_blocks(image_size)


def _width(base_channels: int, level: int) -> int:
    """Channel width at a resolution level (0 = full resolution), capped at 8x base."""
    return base_channels * min(2**level, 8)


def _upsample(c_in: int, c_out: int, kind: str, bias: bool) -> list[nn.Module]:
    """x2 resolution: a strided transposed convolution (DCGAN), or nearest-neighbour
    upsampling then a 3x3 convolution (no checkerboard pattern: Odena et al., 2016)."""
    if kind == "nearest":
        return [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, 1, 1,
                                                                      bias=bias)]
    return [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=bias)]


class NoiseInjection(nn.Module):
    """Adds per-pixel Gaussian noise scaled by a learned per-channel weight (zero at the start),
    as in StyleGAN (Karras et al., 2019): fine, independent texture such as a scanner's noise,
    which an upsampling generator otherwise has to fake from the latent code."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype)
        return x + self.weight * noise


class Generator(nn.Module):
    """Latent code (+ label, + site) -> image in [-1, 1] of shape (channels, size, size).

    With ``num_sites`` > 1 it is also site-conditional: a learned code per site (its scanner's
    look) multiplies the latent code like the label embedding. The buffer ``site_examples``
    (num_sites, classes) holds each site's number of training images per class (set by the
    server, zero until a site trained); a call without ``sites`` draws each image's site in
    proportion to its class's column, so the model samples the federation's mix and never asks
    a site's code for a class that site has (next to) no images of. With ``site_output`` too,
    the last block (to pixels, and its noise scales) is one per site: a scanner's intensity
    mapping and grain, learned by that site alone instead of averaged with the others' (its
    output channels are stacked site by site; each image keeps its own site's). With
    ``site_batchnorm`` every BatchNorm keeps its statistics, scale and shift per site (as
    FedBN does), with ``class_batchnorm`` a scale and shift per class (conditional BatchNorm):
    :class:`ConditionalBatchNorm2d`, so that normalisation does not undo the codes.
    """

    def __init__(self, image_size: int = 32, channels: int = 1, latent_dim: int = 64,
                 num_classes: int = 0, base_channels: int = 32,
                 upsampling: str = "transpose", noise_injection: bool = False,
                 num_sites: int = 0, site_output: bool = False,
                 site_batchnorm: bool = False, class_batchnorm: bool = False) -> None:
        super().__init__()
        if upsampling not in UPSAMPLINGS:
            raise ValueError(f"upsampling must be one of {UPSAMPLINGS}, got '{upsampling}'")
        blocks = _num_blocks(image_size)
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.num_sites = num_sites
        self.label_embedding = nn.Embedding(num_classes, latent_dim) if num_classes > 1 else None
        self.site_embedding = nn.Embedding(num_sites, latent_dim) if num_sites > 1 else None
        if self.site_embedding is not None:
            self.register_buffer("site_examples", torch.zeros(num_sites, max(num_classes, 1)))
        norm_sites = num_sites if self.site_embedding is not None and site_batchnorm else 1
        norm_classes = num_classes if self.label_embedding is not None and class_batchnorm else 1

        def norm(c: int) -> nn.Module:
            if norm_sites == norm_classes == 1:
                return nn.BatchNorm2d(c)
            return ConditionalBatchNorm2d(c, norm_sites, norm_classes)

        top = _width(base_channels, blocks - 1)
        self.project = nn.Sequential(
            nn.Linear(latent_dim, top * 16, bias=False),
            nn.Unflatten(1, (top, 4, 4)),
            norm(top),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = []
        for level in range(blocks - 1, 0, -1):
            c_in, c_out = _width(base_channels, level), _width(base_channels, level - 1)
            layers += [
                *_upsample(c_in, c_out, upsampling, bias=False),
                *([NoiseInjection(c_out)] if noise_injection else []),
                norm(c_out),
                nn.ReLU(inplace=True),
            ]
        # the last block (to pixels): shared, or one per site (each site's output channels)
        self.channels = channels
        per_site = self.site_embedding is not None and site_output
        out = channels * num_sites if per_site else channels
        last = [*_upsample(_width(base_channels, 0), out, upsampling, bias=True),
                *([NoiseInjection(out)] if noise_injection else [])]
        self.body = nn.Sequential(*layers, *([] if per_site else [*last, nn.Tanh()]))
        self.site_output = nn.Sequential(*last) if per_site else None

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None,
                sites: torch.Tensor | None = None) -> torch.Tensor:
        """Generate images from latent codes ``z`` (N, latent_dim), labels (N,) for a
        class-conditional model and, for a site-conditional one, site indices (N,) (drawn
        from the federation's mix when None)."""
        if self.label_embedding is not None:
            if labels is None:
                raise ValueError("this generator is class-conditional: pass labels")
            z = z * self.label_embedding(labels)
        if self.site_embedding is not None:
            if sites is None:
                sites = self.draw_sites(z.shape[0], labels)
            z = z * self.site_embedding(sites.to(z.device))
        x = _run(self.project, z, sites, labels)
        if x.device.type == "cpu":  # oneDNN's 3x3 convolutions run ~2x faster channels-last
            x = x.contiguous(memory_format=torch.channels_last)
        out = _run(self.body, x, sites, labels)
        if self.site_output is None:
            return out
        out = self.site_output(out)
        n, _, height, width = out.shape
        out = out.view(n, self.num_sites, self.channels, height, width)
        return torch.tanh(out[torch.arange(n, device=out.device), sites.to(out.device)])

    def site_owned(self) -> dict[str, tuple[int, int]]:
        """The parameters each site owns a slice of, as name -> (dimension, slice width):
        site s owns indices [s * width, (s + 1) * width) along that dimension."""
        if self.site_embedding is None:
            return {}
        owned = {"site_embedding.weight": (0, 1)}
        for prefix, module in self.named_modules():
            if isinstance(module, ConditionalBatchNorm2d) and module.sites > 1:  # row per site
                owned.update({f"{prefix}.{name}": (0, 1) for name in
                              ("weight", "bias", "running_mean", "running_var")})
        for index, module in enumerate(self.site_output or []):
            for name, _ in module.named_parameters():
                # output channels: dim 0 of a Conv2d weight and of biases, dim 1 of a
                # ConvTranspose2d weight (in, out, k, k) and of noise scales (1, C, 1, 1)
                dim = 1 if name == "weight" and isinstance(
                    module, nn.ConvTranspose2d | NoiseInjection) else 0
                owned[f"site_output.{index}.{name}"] = (dim, self.channels)
        return owned

    def draw_sites(self, n: int, labels: torch.Tensor | None = None) -> torch.Tensor:
        """``n`` site indices drawn (global RNG): for image i in proportion to the sites'
        images of class ``labels[i]``; without labels, or for a class no site reported, in
        proportion to their training-set sizes; uniformly before any site reported one."""
        table = self.site_examples.detach().float().cpu().clamp(min=0)
        if not torch.isfinite(table).all():
            table = torch.zeros_like(table)
        sizes = table.sum(dim=1)
        if sizes.sum() <= 0:
            sizes = torch.ones_like(sizes)
        if labels is None or table.shape[1] == 1:
            return torch.multinomial(sizes, n, replacement=True)
        per_class = table[:, labels.detach().cpu().long()].T  # (n, num_sites)
        unknown = per_class.sum(dim=1) <= 0
        per_class[unknown] = sizes
        return torch.multinomial(per_class, 1).squeeze(1)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        """Older checkpoints hold one training-set size per site: spread it over the classes."""
        key = prefix + "site_examples"
        if self.site_embedding is not None and key in state_dict:
            saved = torch.as_tensor(state_dict[key])
            if saved.ndim == 1 and saved.shape[0] == self.num_sites:
                state_dict[key] = spread_over_classes(saved, self.site_examples.shape[1])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _run(layers: nn.Sequential, x: torch.Tensor, sites: torch.Tensor | None,
         labels: torch.Tensor | None) -> torch.Tensor:
    """``layers`` applied in turn; conditional norms also get each image's site and label."""
    for layer in layers:
        x = layer(x, sites, labels) if isinstance(layer, ConditionalBatchNorm2d) else layer(x)
    return x


def spread_over_classes(sizes: torch.Tensor, classes: int) -> torch.Tensor:
    """One training-set size per site (older checkpoints) as (sites, classes) counts, spread
    evenly: the same draws of sites as before, per class and overall."""
    return sizes.float()[:, None].expand(-1, classes) / classes


class Discriminator(nn.Module):
    """Image (+ label) -> one real/fake score per sample. Opacus-compatible (GroupNorm)."""

    def __init__(self, image_size: int = 32, channels: int = 1, num_classes: int = 0,
                 base_channels: int = 32, auxiliary_classifier: bool = False) -> None:
        super().__init__()
        blocks = _num_blocks(image_size)
        layers: list[nn.Module] = [
            nn.Conv2d(channels, _width(base_channels, 0), 4, 2, 1),
            nn.LeakyReLU(0.2),
        ]
        for level in range(1, blocks):
            c_in, c_out = _width(base_channels, level - 1), _width(base_channels, level)
            layers += [
                nn.Conv2d(c_in, c_out, 4, 2, 1),
                nn.GroupNorm(min(8, c_out // 4), c_out),
                nn.LeakyReLU(0.2),
            ]
        layers.append(nn.Flatten())
        self.features = nn.Sequential(*layers)
        feature_dim = _width(base_channels, blocks - 1) * 16
        self.head = nn.Linear(feature_dim, 1)
        self.num_classes = num_classes
        self.projection = nn.Embedding(num_classes, feature_dim) if num_classes > 1 else None
        if auxiliary_classifier and num_classes < 2:
            raise ValueError("an auxiliary classifier needs a class-conditional model")
        self.classifier = nn.Linear(feature_dim, num_classes) if auxiliary_classifier else None

    def freeze_features(self, blocks: int) -> None:
        """Keep the first ``blocks`` convolution blocks (and their GroupNorm) at their current
        weights: DP-SGD then clips and noises only the rest, so its noise spreads over fewer
        coordinates. Frozen weights are the same at every site (the shared initial model)."""
        convolutions = [m for m in self.features if isinstance(m, nn.Conv2d)]
        if not 0 <= blocks <= len(convolutions):
            raise ValueError(f"discriminator-frozen-blocks must be in [0, {len(convolutions)}] "
                             f"at this image size, got {blocks}")
        seen = 0  # convolutions met so far: a block is its convolution and what follows it
        for module in self.features:
            seen += isinstance(module, nn.Conv2d)
            if 0 < seen <= blocks:
                module.requires_grad_(False)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None,
                with_logits: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        """Scores of shape (N,): higher means 'looks real'. ``with_logits``: also the
        auxiliary classifier's class logits (N, num_classes), or None without that head."""
        phi = self.features(images)
        score = self.head(phi).squeeze(1)
        if self.projection is not None:
            if labels is None:
                raise ValueError("this discriminator is class-conditional: pass labels")
            score = score + (self.projection(labels) * phi).sum(dim=1)
        if not with_logits:
            return score
        return score, (self.classifier(phi) if self.classifier is not None else None)


def build_models(config: RunConfig) -> tuple[Generator, Discriminator]:
    """Generator and discriminator for a run config, with DCGAN initialisation."""
    num_classes = config.num_classes if config.conditional else 0
    generator = Generator(config.image_size, config.channels, config.latent_dim,
                          num_classes, config.base_channels, config.generator_upsampling,
                          config.generator_noise, config.num_sites,
                          config.site_output_layer, config.site_batchnorm,
                          config.class_batchnorm)
    discriminator = Discriminator(config.image_size, config.channels, num_classes,
                                  config.discriminator_channels or config.base_channels,
                                  auxiliary_classifier=config.conditional
                                  and config.auxiliary_classifier > 0)
    generator.apply(_dcgan_init)
    discriminator.apply(_dcgan_init)
    return generator, discriminator


def _dcgan_init(module: nn.Module) -> None:
    """Normal(0, 0.02) weights for convolutions, as in Radford et al. (2016)."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d | nn.GroupNorm):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
    elif isinstance(module, ConditionalBatchNorm2d):  # every row starts from the same scale
        scale = torch.normal(1.0, 0.02, (module.channels,))
        with torch.no_grad():
            module.weight.copy_(scale.expand_as(module.weight))
        nn.init.zeros_(module.bias)
    elif isinstance(module, Discriminator) and module.projection is not None:
        # N(0, 1) embeddings would make the projection term dominate the score at the start
        nn.init.normal_(module.projection.weight, 0.0, 0.02)
