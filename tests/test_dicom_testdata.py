"""Test DICOM data: pydicom's offline real files, and a writer for synthetic and broken files.

Other DICOM tests import ``write_dicom``, ``real_file`` and ``CANARY`` from here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

# Header values that must never leave a site (see test_data_privacy.py).
CANARY = {
    "PatientName": "Canary^Privacy^Quentin",
    "PatientID": "CANARY-PID-77310",
    "PatientBirthDate": "19450317",
    "StudyDate": "20191231",
    "AccessionNumber": "ACC99887766",
    "InstitutionName": "Saint Canary Hospital",
}


def real_file(name: str) -> Path:
    """A DICOM file shipped inside the pydicom wheel (never downloaded)."""
    base = Path(pydicom.data.__file__).parent / "test_files"
    path = base / name
    assert path.is_file(), f"{name} is not in the pydicom wheel"
    return path


def write_dicom(path: Path, pixels: np.ndarray, *, modality: str = "CT",
                photometric: str | None = None, slope: float | None = None,
                intercept: float | None = None, window: tuple[float, float] | None = None,
                body_part: str | None = None, transfer_syntax: str = ExplicitVRLittleEndian,
                header: dict[str, str] | None = None, pixel_data: bool = True) -> Path:
    """Write a DICOM file from (H, W), (F, H, W) or (H, W, 3) pixels (int, uint or float32)."""
    pixels = np.asarray(pixels)
    colour = pixels.ndim == 3 and pixels.shape[-1] == 3 and photometric in ("RGB", "YBR_FULL")
    frames = pixels.shape[0] if pixels.ndim == 3 and not colour else 1
    rows, cols = (pixels.shape[-3:-1] if colour else pixels.shape[-2:])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = modality
    for key, value in {**CANARY, **(header or {})}.items():
        setattr(ds, key, value)
    if body_part:
        ds.BodyPartExamined = body_part
    ds.Rows, ds.Columns = int(rows), int(cols)
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = photometric or "MONOCHROME2"
    if colour:
        ds.PlanarConfiguration = 0
    if pixels.dtype == np.float32:
        ds.BitsAllocated = 32
        if pixel_data:
            ds.FloatPixelData = pixels.tobytes()
    else:
        bits = pixels.dtype.itemsize * 8
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
        ds.PixelRepresentation = 1 if np.issubdtype(pixels.dtype, np.signedinteger) else 0
        if pixel_data:
            ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    if slope is not None or intercept is not None:
        ds.RescaleSlope = slope if slope is not None else 1
        ds.RescaleIntercept = intercept if intercept is not None else 0
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    path.parent.mkdir(parents=True, exist_ok=True)
    known = pydicom.uid.UID(transfer_syntax).is_transfer_syntax
    ds.save_as(path, enforce_file_format=True,
               **({} if known else {"implicit_vr": False, "little_endian": True}))
    return path


def ct_hu(path: Path, hu: np.ndarray | float, shape=(16, 16), **kwargs) -> Path:
    """A CT file whose pixels hold ``hu`` (Hounsfield units) via Rescale Intercept -1024."""
    values = np.broadcast_to(np.asarray(hu, dtype=np.int32) + 1024, shape).astype(np.int16)
    return write_dicom(path, values, slope=1, intercept=-1024, **kwargs)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "rtdose.dcm", "MR_truncated.dcm",
                                  "dicomdirtests/77654033/CR1/6154", "examples_rgb_color.dcm"])
def test_real_files_ship_offline(name):
    assert real_file(name).stat().st_size > 0


def test_writer_round_trips(tmp_path):
    pixels = np.arange(12 * 10, dtype=np.int16).reshape(12, 10)
    ds = pydicom.dcmread(write_dicom(tmp_path / "a.dcm", pixels, slope=2, intercept=-5))
    np.testing.assert_array_equal(ds.pixel_array, pixels)
    assert str(ds.PatientName) == CANARY["PatientName"] and float(ds.RescaleSlope) == 2
    frames = np.zeros((3, 4, 5), np.uint16)
    assert pydicom.dcmread(write_dicom(tmp_path / "m.dcm", frames)).pixel_array.shape == (3, 4, 5)
