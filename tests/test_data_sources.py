"""Tests for load_site_dataset: image folders, MedMNIST .npz, per-site lists and errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from client.data import SUPPORTED_IMAGE_SIZES, DataError, SiteData, load_site_dataset


def _write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _class_folder(root: Path, counts: dict[str, int], size=(12, 12), seed=0) -> Path:
    rng = np.random.default_rng(seed)
    for name, count in counts.items():
        for i in range(count):
            _write_png(root / name / f"img{i:03d}.png", rng.integers(0, 256, size, dtype=np.uint8))
    return root


def _write_npz(path: Path, n=30, hw=(28, 28), channels=None, num_classes=3,
               seed=0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (n, *hw) if channels is None else (n, *hw, channels)
    images = rng.integers(0, 256, shape, dtype=np.uint8)
    labels = (np.arange(n) % num_classes).reshape(n, 1).astype(np.int64)
    np.savez(path, train_images=images, train_labels=labels,
             val_images=images[:2], val_labels=labels[:2], test_images=images[:2], test_labels=labels[:2])
    return images, labels


def _check(data: SiteData, channels: int, size: int) -> None:
    assert data.images.dtype == np.float32 and data.labels.dtype == np.int64
    assert data.images.shape == (len(data), channels, size, size)
    assert data.labels.shape == (len(data),)
    assert data.images.min() >= -1.0 and data.images.max() <= 1.0
    assert data.labels.min() >= 0 and data.labels.max() < data.num_classes
    assert len(data.class_names) == data.num_classes


@pytest.mark.parametrize("size", SUPPORTED_IMAGE_SIZES)
@pytest.mark.parametrize("channels", [1, 3])
def test_phantom_shapes_every_size(size, channels):
    data = load_site_dataset("phantom", 0, 2, size, channels=channels, samples_per_site=4)
    _check(data, channels, size)
    if channels == 3:
        np.testing.assert_array_equal(data.images[:, 0], data.images[:, 2])


@pytest.mark.parametrize("size", SUPPORTED_IMAGE_SIZES)
@pytest.mark.parametrize("channels", [1, 3])
def test_folder_shapes_every_size(tmp_path, size, channels):
    root = _class_folder(tmp_path / "data", {"a": 2, "b": 1}, size=(10, 14))
    _check(load_site_dataset(str(root), 0, 1, size, channels=channels), channels, size)


def test_folder_class_subfolders_labels(tmp_path):
    root = tmp_path / "imgs"
    for name, value in (("tumor", 250), ("healthy", 10)):
        for i in range(3):
            _write_png(root / name / f"{i}.png", np.full((8, 8), value, dtype=np.uint8))
    _write_png(root / "tumor" / "nested" / "x.png", np.full((8, 8), 250, dtype=np.uint8))
    (root / "notes.txt").write_text("ignored")
    data = load_site_dataset(str(root), site=0, num_sites=1, image_size=16)
    assert data.class_names == ["healthy", "tumor"] and data.num_classes == 2
    assert data.label_counts() == {"healthy": 3, "tumor": 4}
    means = data.images.reshape(len(data), -1).mean(1)
    assert np.all(means[data.labels == 1] > 0.9) and np.all(means[data.labels == 0] < -0.9)
    assert str(root) in data.source


def test_flat_folder_is_one_class_and_jpeg(tmp_path):
    root = tmp_path / "flat"
    _write_png(root / "a.png", np.zeros((8, 8), dtype=np.uint8))
    root.mkdir(exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), 255, dtype=np.uint8)).save(root / "b.JPG")
    data = load_site_dataset(str(root), 0, 1, 16)
    assert data.class_names == ["all"] and data.num_classes == 1 and len(data) == 2
    np.testing.assert_allclose(data.images[1], 1.0, atol=0.02)


def test_aspect_ratio_padding_keeps_content_centred(tmp_path):
    wide = np.full((10, 40), 200, dtype=np.uint8)  # H=10, W=40, background (min) value 0 outside
    wide[:, :2] = 0
    _write_png(tmp_path / "one" / "wide.png", wide)
    data = load_site_dataset(str(tmp_path / "one"), 0, 1, 32)
    img = data.images[0, 0]
    rows = np.flatnonzero(img.mean(1) > -0.5)
    assert rows.min() >= 10 and rows.max() <= 21  # 10x40 -> 8x32, padded top and bottom
    assert abs((rows.min() + rows.max()) / 2 - 15.5) <= 0.5
    np.testing.assert_allclose(img[:10], -1.0)  # padded with the background (min) value
    np.testing.assert_allclose(img[-10:], -1.0)
    assert img[16, 10:30].mean() == pytest.approx(200 / 255 * 2 - 1, abs=0.02)


def test_sixteen_bit_png_and_rgb_to_gray(tmp_path):
    root = tmp_path / "mixed"
    _write_png(root / "c" / "deep.png", np.full((8, 8), 65535 // 2, dtype=np.uint16))
    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    rgb[..., 1] = 255
    _write_png(root / "c" / "green.png", rgb)
    data = load_site_dataset(str(root), 0, 1, 16)
    assert data.images[0].mean() == pytest.approx(0.0, abs=0.01)  # 16-bit mid-grey by its own range
    assert data.images[1].mean() == pytest.approx(0.587 * 2 - 1, abs=0.01)  # luma of pure green
    gray_as_rgb = load_site_dataset(str(root), 0, 1, 16, channels=3)
    np.testing.assert_allclose(gray_as_rgb.images[0, 0], gray_as_rgb.images[0, 1])


def test_folder_split_across_sites(tmp_path):
    root = _class_folder(tmp_path / "pool", {"x": 10, "y": 11})
    sites = [load_site_dataset(str(root), s, 3, 16) for s in range(3)]
    assert sorted(len(s) for s in sites) == [7, 7, 7]
    assert all(s.class_names == ["x", "y"] for s in sites)
    assert "site 2 of 3" in sites[1].source
    total = sum(s.label_counts()["y"] for s in sites)
    assert total == 11


def test_npz_round_trip(tmp_path):
    path = tmp_path / "organ.npz"
    images, labels = _write_npz(path, n=12, hw=(32, 32))
    data = load_site_dataset(str(path), 0, 1, 32)
    assert data.class_names == ["0", "1", "2"] and data.num_classes == 3
    np.testing.assert_array_equal(data.labels, labels[:, 0])
    np.testing.assert_allclose(data.images[:, 0], images.astype(np.float32) / 127.5 - 1.0, atol=1e-6)
    resized = load_site_dataset(str(path), 0, 1, 16, channels=3)
    _check(resized, 3, 16)


def test_npz_rgb_flat_labels_and_split(tmp_path):
    path = tmp_path / "derma.npz"
    rng = np.random.default_rng(1)
    np.savez_compressed(path, train_images=rng.integers(0, 256, (40, 28, 28, 3), dtype=np.uint8),
                        train_labels=np.repeat(np.arange(4), 10))
    parts = [load_site_dataset(str(path), s, 2, 32, channels=3, alpha=1.0, seed=3) for s in range(2)]
    assert sum(len(p) for p in parts) == 40
    for p in parts:
        _check(p, 3, 32)
        assert p.class_names == ["0", "1", "2", "3"]


def test_comma_separated_per_site_folders(tmp_path):
    a = _class_folder(tmp_path / "site_a", {"neg": 2, "pos": 1})
    b = _class_folder(tmp_path / "site_b", {"pos": 4})
    c = _class_folder(tmp_path / "site_c", {"neg": 1, "other": 2})
    source = f"{a}, {b},{c}"
    sites = [load_site_dataset(source, s, 3, 16, alpha=0.5) for s in range(3)]
    assert [len(s) for s in sites] == [3, 4, 3]  # each site loads its entry whole
    assert all(s.class_names == ["neg", "other", "pos"] for s in sites)  # shared label order
    assert sites[1].label_counts() == {"neg": 0, "other": 0, "pos": 4}
    assert sites[0].source == str(a)
    with pytest.raises(DataError, match="2 per-site entries given but there are 3 sites"):
        load_site_dataset(f"{a},{b}", 0, 3, 16)


def test_comma_separated_npz(tmp_path):
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"s{i}.npz")
        _write_npz(paths[-1], n=5 + i, hw=(16, 16), num_classes=2 + i)
    sites = [load_site_dataset(",".join(map(str, paths)), s, 2, 16) for s in range(2)]
    assert [len(s) for s in sites] == [5, 6]
    assert all(s.class_names == ["0", "1", "2"] for s in sites)


# ---------------------------------------------------------------- errors


def _raises(source: str, needle: str, **kwargs) -> str:
    args = dict(site=0, num_sites=1, image_size=16)
    args.update(kwargs)
    with pytest.raises(DataError) as info:
        load_site_dataset(source, **args)
    message = str(info.value)
    assert needle in message, message
    assert "\n" not in message
    return message


def test_error_missing_path(tmp_path):
    _raises(str(tmp_path / "nope"), str(tmp_path / "nope"))


def test_error_empty_folder(tmp_path):
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    msg = _raises(str(tmp_path / "empty"), str(tmp_path / "empty"))
    assert "no images" in msg


def test_error_corrupt_image_names_file(tmp_path):
    root = _class_folder(tmp_path / "bad", {"a": 2})
    (root / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    _raises(str(root), str(root / "a" / "broken.png"))


@pytest.mark.parametrize("missing", ["train_images", "train_labels"])
def test_error_npz_missing_key(tmp_path, missing):
    path = tmp_path / "partial.npz"
    arrays = {"train_images": np.zeros((3, 8, 8), np.uint8), "train_labels": np.zeros(3, np.int64)}
    del arrays[missing]
    np.savez(path, **arrays)
    msg = _raises(str(path), str(path))
    assert missing in msg


def test_error_npz_length_mismatch_and_corrupt(tmp_path):
    path = tmp_path / "mismatch.npz"
    np.savez(path, train_images=np.zeros((3, 8, 8), np.uint8), train_labels=np.zeros(4, np.int64))
    assert "3 images" in _raises(str(path), str(path))
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04garbage")
    _raises(str(broken), str(broken))


def test_error_bad_image_size_and_channels(tmp_path):
    root = _class_folder(tmp_path / "ok", {"a": 1})
    msg = _raises(str(root), str(root), image_size=48)
    assert "16, 32, 64, 128" in msg
    assert "channels" in _raises(str(root), str(root), channels=2)
    _raises("phantom", "supported", image_size=20)


def test_error_site_out_of_range_and_empty_site(tmp_path):
    root = _class_folder(tmp_path / "small", {"a": 2})
    assert "out of range" in _raises(str(root), str(root), site=3, num_sites=3)
    _raises(str(root), str(root), site=-1, num_sites=3)
    msg = _raises(str(root), str(root), site=2, num_sites=3)
    assert "got no images from" in msg


def test_error_comma_list_missing_entry(tmp_path):
    a = _class_folder(tmp_path / "a", {"x": 1})
    missing = tmp_path / "missing"
    _raises(f"{a},{missing}", str(missing), site=1, num_sites=2)
    _raises(f"{a},", "empty entry", site=0, num_sites=2)


def test_error_unsupported_file(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("1,2,3")
    _raises(str(path), str(path))


def test_data_error_is_value_error():
    assert issubclass(DataError, ValueError)
