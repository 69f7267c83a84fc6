"""Who this site is and where its data and state live: node config + run config."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from client.data import DICOM_OPTION_KEYS, SiteData, load_site_dataset
from client.data.canaries import CANARY_SITE, CanarySet, make_canaries, with_canaries
from client.holdout import cached_split
from medgan_models.config import AUTO_SITES, ConfigError, RunConfig

# Run-config keys a site may override for itself in its node config (e.g. its own data).
SITE_OVERRIDABLE = ("data", "state-dir", "max-epsilon", "device", "samples-per-site")
# Node-config keys for a site's DICOM data (window, labels, filters): see client.data.dicom_options.
# ``data-dir`` is an alias of ``data``.
NODE_KEYS = ("partition-id", "num-partitions", "site-name", "site-code", "data-dir", *SITE_OVERRIDABLE,
             *DICOM_OPTION_KEYS)


@dataclass(frozen=True)
class SiteSettings:
    """One site's identity and local settings."""

    site_id: str
    partition_id: int
    num_partitions: int
    state_dir: Path
    data_options: tuple[tuple[str, str], ...] = ()  # DICOM option node-config keys, sorted
    code: int = 0  # node-config site-code (default: partition-id)
    code_given: bool = False  # whether the node config set a site-code or a partition-id

    def site_code(self, config: RunConfig) -> int | None:
        """This site's index into a site-conditional generator, else None."""
        return self.code if config.site_conditional else None

    @property
    def ledger_dir(self) -> Path:
        """Folder of this site's privacy ledger on its own disk."""
        return self.state_dir / self.site_id


def site_config(run_config: Mapping[str, Any], node_config: Mapping[str, Any],
                overrides: Mapping[str, Any] | None = None, num_sites: int | None = None
                ) -> tuple[RunConfig, SiteSettings]:
    """Merge run config, local overrides and node config into (RunConfig, SiteSettings);
    ``num_sites``: the server's count for a run config's num-sites "auto" (from a message)."""
    unknown = [k for k in node_config if k not in NODE_KEYS]
    if unknown:
        raise ConfigError(f"unknown node-config key(s) {unknown}; known: {list(NODE_KEYS)}")
    merged = {**run_config, **(overrides or {})}
    merged.update({k: v for k, v in node_config.items() if k in SITE_OVERRIDABLE})
    if "data-dir" in node_config:
        if "data" in node_config and str(node_config["data"]) != str(node_config["data-dir"]):
            raise ConfigError("node config sets both data and data-dir, differently; set one")
        merged["data"] = node_config["data-dir"]
    config = RunConfig.from_mapping(merged)
    if config.num_sites == AUTO_SITES and num_sites is not None:
        config = config.replace(num_sites=num_sites)
    partition_id = int(node_config.get("partition-id", 0))
    num_partitions = int(node_config.get("num-partitions", 1))
    if not 0 <= partition_id < num_partitions:
        raise ConfigError(f"partition-id {partition_id} is not in [0, {num_partitions})")
    code = int(node_config.get("site-code", partition_id))
    if config.site_conditional and not 0 <= code < config.num_sites:
        raise ConfigError(f"site code {code} (node-config site-code, else partition-id) is not "
                          f"in [0, {config.num_sites}): the run's num-sites is {config.num_sites}")
    site_id = str(node_config.get("site-name", f"site-{partition_id}"))
    state_dir = Path(config.state_dir or Path(config.out_dir) / "site-state")
    options = tuple(sorted((k, str(v)) for k, v in node_config.items() if k in DICOM_OPTION_KEYS))
    given = "site-code" in node_config or "partition-id" in node_config
    return config, SiteSettings(site_id, partition_id, num_partitions, state_dir, options, code,
                                given)


def site_info(site: SiteSettings) -> dict[str, int]:
    """What the server counts for num-sites "auto": this site's code, whether the node config
    gave one (a site-code or a partition-id), and its number of partitions."""
    return {"site-code": site.code, "code-given": int(site.code_given),
            "num-partitions": site.num_partitions}


def load_data(config: RunConfig, site: SiteSettings) -> SiteData:
    """This site's training images (cached per process: rounds do not re-read the data)."""
    return _load_cached(config.data, site.partition_id, site.num_partitions, config.image_size,
                        config.channels, config.alpha or None, config.seed,
                        config.samples_per_site, site.data_options)


@lru_cache(maxsize=4)
def _load_cached(source: str, site: int, num_sites: int, image_size: int, channels: int,
                 alpha: float | None, seed: int, samples_per_site: int,
                 data_options: tuple[tuple[str, str], ...] = ()) -> SiteData:
    return load_site_dataset(source, site, num_sites, image_size, channels, alpha=alpha,
                             seed=seed, samples_per_site=samples_per_site,
                             dicom=dict(data_options))


def train_and_holdout(config: RunConfig, site: SiteSettings) -> tuple[SiteData, SiteData]:
    """This site's (training, held-out) images. The held-out part is never trained on; on the
    canary site of a run with ``canaries``, the training part also holds the included canaries."""
    train, holdout = cached_split(load_data(config, site), config.holdout_fraction, config.seed)
    if config.canaries and site.partition_id == CANARY_SITE:
        train = with_canaries(train, run_canaries(config))
    return train, holdout


def run_canaries(config: RunConfig) -> CanarySet:
    """The run's canary set (its inclusion mask is rebuilt from the run seed)."""
    return make_canaries(config.canaries, config.image_size, config.channels,
                         config.num_classes if config.conditional else 0, config.seed)
