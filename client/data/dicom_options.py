"""How a site's DICOM files become training images: window, labels, filters.

Lowest first: the defaults, a ``medgan-dicom.toml`` file in the site's DICOM folder (so the
settings travel with the data, in simulation and in a SuperNode alike), then overrides such as
node-config keys or ``medgan data inspect`` flags.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from client.data.dicom_reader import check_window
from client.data.site_data import DataError

SETTINGS_FILE = "medgan-dicom.toml"
LABEL_MODES = ("auto", "manifest", "folders", "none")
DEFAULT_MIN_SIZE = 8
OPTION_KEYS = ("window", "labels", "label-manifest", "modality", "body-part", "min-size")


@dataclass(frozen=True)
class DicomOptions:
    """How a site's DICOM files become training images (kebab-case keys in ``OPTION_KEYS``)."""

    window: str = "auto"
    labels: str = "auto"
    label_manifest: str = ""
    modality: tuple[str, ...] = ()
    body_part: tuple[str, ...] = ()
    min_size: int = DEFAULT_MIN_SIZE

    def updated(self, values: Mapping[str, Any], where: str) -> DicomOptions:
        """A copy with ``values`` (kebab-case keys) applied; DataError naming ``where`` if bad."""
        changes: dict[str, Any] = {}
        for key, value in values.items():
            if key not in OPTION_KEYS:
                raise DataError(f"{where}: unknown DICOM option '{key}' (known: {', '.join(OPTION_KEYS)})")
            name = key.replace("-", "_")
            try:
                changes[name] = _coerce(name, value)
            except (TypeError, ValueError) as exc:
                raise DataError(f"{where}: {key} = {value!r}: {exc}") from None
        return replace(self, **changes)

    def as_mapping(self) -> dict[str, Any]:
        """Kebab-case key -> value (lists for the filters)."""
        return {f.name.replace("_", "-"): (list(v) if isinstance(v := getattr(self, f.name), tuple)
                                           else v) for f in fields(self)}




def _coerce(name: str, value: Any) -> Any:
    if name in ("modality", "body_part"):
        items = value.split(",") if isinstance(value, str) else list(value)
        return tuple(str(v).strip().upper() for v in items if str(v).strip())
    if name == "min_size":
        number = int(value)
        if number < 1:
            raise ValueError("must be >= 1")
        return number
    if name == "window":
        return check_window(str(value))
    if name == "labels":
        mode = str(value).strip().lower()
        if mode not in LABEL_MODES:
            raise ValueError(f"must be one of {', '.join(LABEL_MODES)}")
        return mode
    return str(value).strip()


def dicom_options(path: Path, overrides: Mapping[str, Any] | None = None) -> DicomOptions:
    """Defaults, then ``<folder>/medgan-dicom.toml`` if there is one, then ``overrides``."""
    options = DicomOptions()
    settings = path / SETTINGS_FILE if path.is_dir() else None
    if settings is not None and settings.is_file():
        try:
            values = tomllib.loads(settings.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise DataError(f"{settings}: cannot read ({exc})".replace("\n", " ")) from None
        options = options.updated(values, str(settings))
    return options.updated(dict(overrides or {}), f"{path} (DICOM options)")
