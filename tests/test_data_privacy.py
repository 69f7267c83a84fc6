"""Privacy at the source: only weights and numbers leave a site, never a header value or an image.

Two virtual hospitals train one round on DICOM folders (with a broken file among them) on Flower's
simulation engine; every reply a site sends is captured at the server, serialised as it travels,
and searched for the header values and the pixels of the sites' files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from flwr.common.serde import message_to_proto
from flwr.superlink.grid.inmemory_grid import InMemoryGrid
from test_dicom_testdata import CANARY, real_file, write_dicom

from client.data import load_site_dataset
from simulation.cli import main

SITE_HEADERS = [
    {"PatientName": "Canary^Alice", "PatientID": "CANARY-SITE0-4411", "StudyDate": "20180214",
     "InstitutionName": "North Canary Clinic"},
    {"PatientName": "Canary^Bob", "PatientID": "CANARY-SITE1-5522", "StudyDate": "20170709",
     "InstitutionName": "South Canary Clinic"},
]


def _site(root: Path, headers: dict[str, str], seed: int) -> Path:
    rng = np.random.default_rng(seed)
    for i in range(8):
        pixels = rng.integers(0, 2000, (16, 16)).astype(np.int16)
        write_dicom(root / f"IM{i:03d}.dcm", pixels, modality="CT", slope=1, intercept=-1024,
                    header={**headers, "PatientBirthDate": f"19{50 + i}0101"})
    (root / "broken.dcm").write_bytes(real_file("CT_small.dcm").read_bytes()[:4000])
    return root


@pytest.fixture(scope="module")
def captured(tmp_path_factory):
    base = tmp_path_factory.mktemp("privacy")
    sites = [_site(base / f"hospital{i}", h, i) for i, h in enumerate(SITE_HEADERS)]
    replies: list = []
    original = InMemoryGrid.send_and_receive

    def recording(self, messages, *args, **kwargs):  # every reply: training AND evaluation
        received = list(original(self, messages, *args, **kwargs))
        replies.extend(received)
        return received

    settings = base / "settings.toml"  # no holdout: all 8 usable images train; cheap evaluation
    settings.write_text("holdout-fraction = 0.0\neval-samples = 20\n")
    mp = pytest.MonkeyPatch()
    mp.setattr(InMemoryGrid, "send_and_receive", recording)
    try:
        code = main(["simulate", "--data", ",".join(map(str, sites)), "--sites", "2",
                     "--rounds", "1", "--image-size", "16", "--local-steps", "2",
                     "--batch-size", "4", "--num-classes", "0", "--seed", "3", "--device", "cpu",
                     "--accountant", "rdp", "--out", str(base / "run"), "--config", str(settings)])
    finally:
        mp.undo()
    assert code == 0
    return sites, replies, base / "run"


def test_simulate_trains_on_dicom_folders(captured):
    _, replies, run = captured
    summary = json.loads((run / "summary.json").read_text())
    assert summary["rounds"] == 1 and summary["stopped"] == "completed"
    assert {c["num_examples"] for c in summary["clients"].values()} == {8}  # broken file skipped
    assert len(replies) == 8  # 2 sites x (site info, train, real statistics, evaluation)


def test_replies_hold_no_header_value_and_no_image(captured):
    sites, replies, _ = captured
    wire = [message_to_proto(m).SerializeToString() for m in replies]
    secrets = [v for h in SITE_HEADERS for v in h.values()] + list(CANARY.values())
    secrets += [f"19{50 + i}0101" for i in range(8)] + [str(s) for s in sites]
    for blob in wire:
        for secret in secrets:
            for encoding in ("utf-8", "utf-16-le"):
                assert secret.encode(encoding) not in blob, secret
    images = []
    for i, root in enumerate(sites):
        for path in sorted(root.glob("IM*.dcm")):
            raw = pydicom.dcmread(path).PixelData
            assert all(raw[k:k + 64] not in blob for blob in wire for k in (0, 192))
        data = load_site_dataset(",".join(map(str, sites)), i, 2, 16)
        images.append(data.images.reshape(len(data), -1))
        for row in data.images[:, 0, 8]:  # one decoded image row, as sent if it were sent
            assert all(row.tobytes() not in blob for blob in wire)
    pixels = np.concatenate(images)
    for message in replies:
        content = message.content
        assert set(content.array_records) <= {"arrays"}  # weights, or feature mean/covariance
        for record in content.array_records.values():
            for array in record.values():
                values = array.numpy().ravel()
                if values.size == pixels.shape[1]:
                    assert not np.any(np.all(np.isclose(pixels, values), axis=1))
        for record in content.config_records.values():
            for value in record.values():
                assert not any(s in str(value) for s in secrets)
        for record in content.metric_records.values():
            for value in record.values():  # numbers, or lists of numbers (class counts)
                assert all(isinstance(v, int | float) for v in np.atleast_1d(value).tolist())
