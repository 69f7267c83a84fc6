"""``medgan generate --format dicom``: synthetic Secondary Capture files that round-trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import SecondaryCaptureImageStorage
from test_dicom_testdata import CANARY

from client.data import load_dicom, load_site_dataset
from medgan_models.config import RunConfig
from medgan_models.networks import build_models
from medgan_models.weights import pair_state
from server.checkpoint import Checkpoint, save_checkpoint
from simulation.cli import main
from simulation.dicom_export import SYNTHETIC_PATIENT_ID, SYNTHETIC_PATIENT_NAME


def _run(tmp_path: Path, num_classes: int, channels: int = 1) -> Path:
    """A run folder holding one (untrained) checkpoint: enough to generate from."""
    run = tmp_path / f"run-c{num_classes}"
    config = RunConfig(image_size=16, num_classes=num_classes, channels=channels, base_channels=8,
                       latent_dim=8)
    generator, discriminator = build_models(config)
    save_checkpoint(run, Checkpoint(round=3, weights=pair_state(generator, discriminator),
                                    run_config=config.to_mapping(), seed=0))
    return run


def test_dicom_output_says_it_is_synthetic_and_round_trips(tmp_path):
    run = _run(tmp_path, num_classes=2)
    out = tmp_path / "dcm"
    assert main(["generate", "--run", str(run), "--n", "4", "--out", str(out),
                 "--format", "dicom", "--seed", "5"]) == 0
    assert main(["generate", "--run", str(run), "--n", "4", "--out", str(tmp_path / "s.npz"),
                 "--seed", "5"]) == 0
    reference = np.load(tmp_path / "s.npz")
    files = sorted(out.glob("*.dcm"))
    assert len(files) == 4
    datasets = [pydicom.dcmread(f) for f in files]
    for ds, pixels in zip(datasets, reference["images"], strict=True):
        assert ds.file_meta.MediaStorageSOPClassUID == SecondaryCaptureImageStorage
        assert ds.SOPClassUID == SecondaryCaptureImageStorage
        assert list(ds.ImageType) == ["DERIVED", "SECONDARY"]
        assert ds.ConversionType == "SYN" and ds.BurnedInAnnotation == "NO"
        assert "SYNTHETIC" in ds.SeriesDescription and "DP-GAN" in ds.SeriesDescription
        assert run.name in ds.SeriesDescription and "round 3" in ds.SeriesDescription
        assert str(ds.PatientName) == SYNTHETIC_PATIENT_NAME and ds.PatientID == SYNTHETIC_PATIENT_ID
        assert ds.PatientBirthDate == "" and "SYNTHETIC" in ds.ImageComments
        np.testing.assert_array_equal(ds.pixel_array, pixels)  # same images as the .npz
    uids = {ds.SOPInstanceUID for ds in datasets}
    assert len(uids) == 4 and len({ds.SeriesInstanceUID for ds in datasets}) == 1
    text = b"".join(f.read_bytes() for f in files)
    assert not any(value.encode() in text for value in CANARY.values())

    # ... and back through the project's own reader, with the labels from labels.csv
    load = load_dicom(out, 16, 1)
    assert load.label_mode == "manifest" and load.class_names == ["0", "1"]
    assert load.labels.tolist() == reference["labels"].tolist()
    expected = reference["images"].astype(np.float32) / 255.0 * 2.0 - 1.0
    np.testing.assert_allclose(load.images[:, 0], expected, atol=1e-6)
    assert len(load_site_dataset(str(out), 0, 1, 16)) == 4


def test_unconditional_rgb_dicom(tmp_path):
    run = _run(tmp_path, num_classes=0, channels=3)
    out = tmp_path / "rgb"
    assert main(["generate", "--run", str(run), "--n", "2", "--out", str(out),
                 "--format", "dicom"]) == 0
    ds = pydicom.dcmread(next(out.glob("*.dcm")))
    assert ds.PhotometricInterpretation == "RGB" and ds.pixel_array.shape == (16, 16, 3)
    assert not (out / "labels.csv").exists()
    assert load_dicom(out, 16, 3).images.shape == (2, 3, 16, 16)


def test_format_flag_errors(tmp_path, capsys):
    run = _run(tmp_path, num_classes=0)
    assert main(["generate", "--run", str(run), "--n", "1", "--out", str(tmp_path / "x"),
                 "--format", "npz"]) == 2
    assert ".npz" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["generate", "--run", str(run), "--n", "1", "--out", str(tmp_path / "x"),
              "--format", "tiff"])
