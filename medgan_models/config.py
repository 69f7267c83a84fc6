"""The run configuration: one object, built once from kebab-case keys, validated up front.

Both sides read it: the ServerApp from ``context.run_config`` and the ClientApp from the
same run config (plus its node config). Keys are those of ``[tool.flwr.app.config]`` in
``pyproject.toml``; an unknown key is an error that suggests the closest known one.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

SUPPORTED_IMAGE_SIZES = (16, 32, 64, 128)
LOSSES = ("minimax", "hinge", "wasserstein")
DIFF_AUGMENTATIONS = ("translation", "cutout")  # diff-augment: comma-separated, any order
ACCOUNTANTS = ("prv", "rdp")
# Opacus per-sample gradient modes medgan-fl's DP step supports: "hooks" and "functorch"
# materialise per-sample gradients; "ghost" (ghost clipping) computes only their norms and
# backpropagates a re-weighted loss through Opacus' criterion wrapper (client/dp_training.py).
# "ew" (expanded weights) rejects the GAN step's pattern (seen here).
GRAD_SAMPLE_MODES = ("hooks", "functorch", "ghost")
AGGREGATIONS = ("fedavg", "median", "trimmed-mean")
UPSAMPLINGS = ("transpose", "nearest")  # the generator's x2 blocks
FAKE_LABELS = ("uniform", "site")  # a site's fake images' class mix
SERVER_OPTIMIZERS = ("none", "fedavgm", "fedadam")  # applied to the aggregate (FedOpt)
AUTO_SITES = -1  # num-sites "auto": one generator code per site, counted at the start of a run


def resampling_blocks(image_size: int) -> int:
    """Number of x2 resampling blocks between 4x4 and ``image_size`` (the networks' depth)."""
    return int(math.log2(image_size // 4))


class ConfigError(ValueError):
    """A run-config value or key is wrong; the message names it."""


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs; field names are the kebab-case keys with '_' for '-'."""

    num_rounds: int = 20
    image_size: int = 32
    channels: int = 1
    num_classes: int = 2
    loss: str = "hinge"
    local_steps: int = 10  # DP discriminator steps per round
    discriminator_steps: int = 1  # discriminator steps per generator step
    generator_steps: int = 1  # generator steps each time (free: they see no real image)
    mode_seeking: float = 0.0  # > 0: weight of MSGAN's mode-seeking term in the generator loss
    # A private mean embedding of each site's images (DP-MERF), matched by the generator
    mean_embedding: float = 10.0  # > 0: weight of its term in the generator loss; 0 = off
    mean_embedding_features: int = 1024  # random Fourier features (even)
    mean_embedding_bandwidth: float = 0.5  # kernel width, as a fraction of sqrt(pixels)
    mean_embedding_noise: float = 5.0  # noise multiplier of its one-off release
    mean_embedding_texture: bool = False  # also match a random conv net's response statistics
    fake_labels: str = "site"  # fakes' class mix: "site" (its released counts) or "uniform"
    auxiliary_classifier: float = 1.0  # AC-GAN class loss weight (conditional models); 0 = off
    batch_size: int = 64
    learning_rate_generator: float = 2e-4
    learning_rate_discriminator: float = 2e-4
    discriminator_beta1: float = 0.5  # Adam beta1 of the private discriminator
    latent_dim: int = 64
    base_channels: int = 32
    discriminator_channels: int = 0  # discriminator's base width (0 = base-channels)
    discriminator_frozen_blocks: int = 0  # first D conv blocks kept at their random init
    local_discriminator: bool = True  # each site keeps its own D across rounds (not averaged)
    generator_upsampling: str = "nearest"  # upsample + 3x3 conv, or "transpose" (DCGAN)
    generator_noise: bool = False  # per-pixel noise inputs with learned scales (StyleGAN)
    # > 1: site-conditional generator, one code per site-code; 0 = off; AUTO_SITES ("auto"):
    # one code per site, counted by the server when the run starts
    num_sites: int = AUTO_SITES
    site_output_layer: bool = True  # with site codes: a last generator block per site
    site_batchnorm: bool = False  # with site codes: the generator's BatchNorm per site (FedBN)
    class_batchnorm: bool = False  # conditional models: the generator's BatchNorm scale per class
    # Privacy: each site's planned budget over the whole run, and the hard cap it may not pass.
    target_epsilon: float = 10.0
    max_epsilon: float = 10.0
    delta: float = 1e-5
    max_grad_norm: float = 1.0
    noise_multiplier: float = 0.0  # 0 = derive it from target-epsilon over the planned rounds
    noise_schedule_ratio: float = 1.0  # first round's noise / last round's (1 = constant)
    accountant: str = "prv"
    grad_sample_mode: str = "ghost"  # Opacus per-sample gradients: "ghost", "hooks", "functorch"
    wgan_clip: float = 0.01
    augment: bool = False
    diff_augment: str = ""  # DiffAugment on every image D sees: "translation,cutout", ""
    # Evaluation (see README "Quality metrics")
    eval_every: int = 4  # rounds between evaluations (0 = never; the last round always)
    eval_samples: int = 300  # generated images per evaluation
    holdout_fraction: float = 0.1  # share of each site's images never trained on (tests)
    tstr_steps: int = 100  # classifier steps for TSTR / TRTR (0 = skip)
    inception_path: str = ""  # local inception-2015-12-05.pt: adds FID and IS
    fid_stats_noise: float = 0.0  # > 0: epsilon of the Gaussian noise on the real statistics
    # Federation
    min_sites: int = 2  # a round is aggregated only if at least this many sites trained
    aggregation: str = "fedavg"  # or "median" / "trimmed-mean" (robust to a faulty site)
    trim_fraction: float = 0.2  # cut from each end per coordinate, for trimmed-mean
    server_optimizer: str = "none"  # "fedavgm" / "fedadam": a server step on the aggregate
    server_learning_rate: float = 1.0
    server_momentum: float = 0.9  # FedAvgM momentum, FedAdam beta1
    generator_ema: float = 0.9  # > 0: released generator = EMA over rounds (warmed up); 0 = off
    max_update_norm: float = 0.0  # > 0: reject updates farther (L2) from the global model
    round_timeout: float = 3600.0
    data: str = "phantom"
    samples_per_site: int = 2000
    canaries: int = 0  # > 0: canary images for the one-run privacy audit (see audit/)
    alpha: float = 0.0  # 0 = IID split of a pooled source; > 0 = Dirichlet concentration
    seed: int = 0
    device: str = "auto"
    out_dir: str = "runs/flwr"
    resume: str = ""
    state_dir: str = ""  # where a site keeps its privacy ledger; "" = <out-dir>/site-state

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RunConfig:
        """Build from kebab-case (or snake_case) keys; reject unknown keys and bad values."""
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            name = key.replace("-", "_")
            if name not in known:
                kebab = sorted(k.replace("_", "-") for k in known)
                close = difflib.get_close_matches(key.replace("_", "-"), kebab, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ConfigError(f"unknown config key '{key}'{hint}")
            kwargs[name] = _coerce(name, value, cls.__dataclass_fields__[name].type)
        config = cls(**kwargs)
        config.validate()
        return config

    def to_mapping(self) -> dict[str, Any]:
        """Kebab-case dict of every value (what a checkpoint stores and a run config holds)."""
        out = dataclasses.asdict(self)
        if out["num_sites"] == AUTO_SITES:
            out["num_sites"] = "auto"
        return {k.replace("_", "-"): v for k, v in out.items()}

    def replace(self, **changes: Any) -> RunConfig:
        """A validated copy with some fields changed (snake_case names)."""
        config = dataclasses.replace(self, **changes)
        config.validate()
        return config

    def validate(self) -> None:
        """Raise ConfigError naming the first bad value."""
        d_blocks = resampling_blocks(self.image_size)
        checks = [
            (self.image_size in SUPPORTED_IMAGE_SIZES,
             f"image-size {self.image_size} is not supported; use one of {SUPPORTED_IMAGE_SIZES}"),
            (self.channels in (1, 3), f"channels must be 1 or 3, got {self.channels}"),
            (self.num_classes >= 0, "num-classes must be >= 0 (0 = unconditional)"),
            (self.num_sites >= AUTO_SITES, "num-sites must be 'auto' or >= 0 (0 = one "
                                           "generator code for all sites)"),
            (self.loss in LOSSES, f"loss must be one of {LOSSES}, got '{self.loss}'"),
            (self.grad_sample_mode in GRAD_SAMPLE_MODES,
             f"grad-sample-mode must be one of {GRAD_SAMPLE_MODES}, got '{self.grad_sample_mode}'"),
            (self.accountant in ACCOUNTANTS,
             f"accountant must be one of {ACCOUNTANTS}, got '{self.accountant}'"),
            (self.num_rounds >= 1, "num-rounds must be >= 1"),
            (self.local_steps >= 1, "local-steps must be >= 1"),
            (self.batch_size >= 1, "batch-size must be >= 1"),
            (self.discriminator_steps >= 1, "discriminator-steps must be >= 1"),
            (self.generator_steps >= 1, "generator-steps must be >= 1"),
            (self.generator_upsampling in UPSAMPLINGS,
             f"generator-upsampling must be one of {UPSAMPLINGS}, got "
             f"'{self.generator_upsampling}'"),
            (self.mode_seeking >= 0, "mode-seeking must be >= 0 (0 = off)"),
            (self.mean_embedding >= 0, "mean-embedding must be >= 0 (0 = off)"),
            (self.mean_embedding_features >= 2 and self.mean_embedding_features % 2 == 0,
             f"mean-embedding-features must be even and >= 2, got "
             f"{self.mean_embedding_features}"),
            (self.mean_embedding_bandwidth > 0, "mean-embedding-bandwidth must be > 0"),
            (self.mean_embedding_noise > 0,
             "mean-embedding-noise must be > 0 (the release's noise multiplier)"),
            (self.fake_labels in FAKE_LABELS,
             f"fake-labels must be one of {FAKE_LABELS}, got '{self.fake_labels}'"),
            (self.auxiliary_classifier >= 0, "auxiliary-classifier must be >= 0 (0 = off)"),
            (self.target_epsilon > 0, "target-epsilon must be > 0"),
            (self.max_epsilon > 0, "max-epsilon must be > 0"),
            (0 < self.delta < 1, f"delta must be in (0, 1), got {self.delta}"),
            (self.max_grad_norm > 0, "max-grad-norm must be > 0"),
            (self.noise_multiplier >= 0, "noise-multiplier must be >= 0 (0 = derive)"),
            (self.noise_schedule_ratio >= 1, "noise-schedule-ratio must be >= 1 (1 = constant)"),
            (self.alpha >= 0, "alpha must be >= 0 (0 = IID)"),
            (not self.diff_augment
             or all(name in DIFF_AUGMENTATIONS for name in self.diff_augment.split(",")),
             f"diff-augment must be \"\" or a comma-separated list of {DIFF_AUGMENTATIONS}, "
             f"got '{self.diff_augment}'"),
            (0 <= self.discriminator_beta1 < 1, "discriminator-beta1 must be in [0, 1)"),
            (0 <= self.discriminator_frozen_blocks <= d_blocks,
             f"discriminator-frozen-blocks must be in [0, {d_blocks}] (the discriminator's "
             f"convolution blocks at {self.image_size} px), got "
             f"{self.discriminator_frozen_blocks}"),
            (self.discriminator_channels >= 0,
             "discriminator-channels must be >= 0 (0 = base-channels)"),
            (self.min_sites >= 1, "min-sites must be >= 1"),
            (self.eval_every >= 0, "eval-every must be >= 0 (0 = never)"),
            (self.eval_samples >= 10, "eval-samples must be >= 10"),
            (0 <= self.holdout_fraction < 1, "holdout-fraction must be in [0, 1)"),
            (self.tstr_steps >= 0, "tstr-steps must be >= 0"),
            (self.fid_stats_noise >= 0, "fid-stats-noise must be >= 0 (0 = exact statistics)"),
            (self.aggregation in AGGREGATIONS,
             f"aggregation must be one of {AGGREGATIONS}, got '{self.aggregation}'"),
            (0 <= self.trim_fraction < 0.5, "trim-fraction must be in [0, 0.5)"),
            (self.server_optimizer in SERVER_OPTIMIZERS,
             f"server-optimizer must be one of {SERVER_OPTIMIZERS}, got "
             f"'{self.server_optimizer}'"),
            (self.server_learning_rate > 0, "server-learning-rate must be > 0"),
            (0 <= self.server_momentum < 1, "server-momentum must be in [0, 1)"),
            (0 <= self.generator_ema < 1, "generator-ema must be in [0, 1) (0 = off)"),
            (self.max_update_norm >= 0, "max-update-norm must be >= 0 (0 = off)"),
            (self.samples_per_site >= 1, "samples-per-site must be >= 1"),
            (self.canaries >= 0, "canaries must be >= 0 (0 = none)"),
            (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
             f"device must be auto, cpu or cuda, got '{self.device}'"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    @property
    def conditional(self) -> bool:
        """Whether the models take a class label."""
        return self.num_classes > 1

    @property
    def site_conditional(self) -> bool:
        """Whether the generator takes a site index (node-config site-code); False while
        ``num-sites`` is still "auto" (the server resolves it at the start of a run)."""
        return self.num_sites > 1


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """Convert a TOML/CLI value to the field's type, with a clear error."""
    kind = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    try:
        if kind == "bool":
            if isinstance(value, str):
                if value.lower() in ("true", "1", "yes"):
                    return True
                if value.lower() in ("false", "0", "no"):
                    return False
                raise ValueError(value)
            return bool(value)
        if kind == "int":
            if name == "num_sites" and str(value).lower() == "auto":
                return AUTO_SITES
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "str":
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"config key '{name.replace('_', '-')}' expects {kind}, got {value!r}"
        ) from None
    return value


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` pairs as run-config keys (a VALUE is read as a TOML value, else kept
    as text), checked against the run config: an unknown key or bad value is a ConfigError."""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = (part.strip() for part in pair.partition("="))
        if not sep or not key:
            raise ConfigError(f"--set takes KEY=VALUE, got '{pair}'")
        try:
            values[key] = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            values[key] = text
    RunConfig.from_mapping(values)
    return values
