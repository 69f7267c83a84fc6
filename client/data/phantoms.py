"""Embedded synthetic dataset: procedurally generated MR-like axial brain slices.

The images are clearly synthetic (no patient data): a head ellipse with a bright
scalp ring, dark skull/CSF gap, folded grey-matter cortex, textured white matter,
two dark lateral ventricles and, for class 1 ("lesion"), a bright round lesion.
Each federated site renders with its own :class:`ScannerProfile` (contrast gamma,
gain, noise, bias field), so sites are genuinely heterogeneous.

Anatomy parameters are drawn per image before any pixel-level randomness, so the
same rng seed yields the same anatomy at every image size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLASS_NAMES: tuple[str, str] = ("normal", "lesion")

_CHUNK = 128  # images rendered per vectorised chunk (bounds memory at 128x128)


@dataclass(frozen=True)
class ScannerProfile:
    """Acquisition characteristics of one site's scanner.

    ``gamma`` is the intensity exponent (>1: higher contrast, darker mid-tones),
    ``gain`` a global brightness factor, ``noise_sigma`` the Rician noise level
    (fraction of full scale), ``bias_strength`` the log-amplitude of a smooth
    multiplicative bias field that increases along ``bias_angle`` (radians).
    """

    name: str
    gamma: float
    gain: float
    noise_sigma: float
    bias_strength: float
    bias_angle: float


_FIXED_PROFILES: dict[int, ScannerProfile] = {
    0: ScannerProfile("A", gamma=1.0, gain=1.0, noise_sigma=0.012, bias_strength=0.06, bias_angle=0.4),
    1: ScannerProfile("B", gamma=0.85, gain=0.95, noise_sigma=0.03, bias_strength=0.40, bias_angle=2.3),
    2: ScannerProfile("C", gamma=1.5, gain=1.12, noise_sigma=0.065, bias_strength=0.12, bias_angle=4.2),
}


def _site_name(site: int) -> str:
    return chr(ord("A") + site) if site < 26 else f"S{site}"


def scanner_profile(site: int, seed: int) -> ScannerProfile:
    """Scanner profile of ``site``: fixed for sites 0-2 ('A', 'B', 'C'), seeded otherwise."""
    if site < 0:
        raise ValueError(f"site must be >= 0, got {site}")
    if site in _FIXED_PROFILES:
        return _FIXED_PROFILES[site]
    rng = np.random.default_rng([int(seed) % 2**32, site, 0x5CA7])
    return ScannerProfile(
        _site_name(site),
        gamma=float(rng.uniform(0.75, 1.6)),
        gain=float(rng.uniform(0.88, 1.12)),
        noise_sigma=float(rng.uniform(0.01, 0.07)),
        bias_strength=float(rng.uniform(0.0, 0.45)),
        bias_angle=float(rng.uniform(0.0, 2 * np.pi)),
    )


def _draw_anatomy(labels: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draw every per-image anatomical parameter (independent of image size)."""
    n = labels.shape[0]
    u = rng.uniform
    p: dict[str, np.ndarray] = {
        "a": u(0.70, 0.85, n), "b": u(0.80, 0.92, n),
        "rot": np.deg2rad(u(-15.0, 15.0, n)),
        "cx": u(-0.04, 0.04, n), "cy": u(-0.04, 0.04, n),
        "scalp": u(0.74, 0.88, n), "scalp_in": u(0.875, 0.905, n), "brain_r": u(0.81, 0.845, n),
        "gm": u(0.38, 0.46, n), "wm": u(0.63, 0.72, n), "csf": u(0.04, 0.10, n),
        "wm_r": u(0.62, 0.69, n),
        # Gyral folding of the grey/white boundary: three angular harmonics (coarse to fine).
        "gyr_k": np.stack([rng.integers(lo, hi, n) for lo, hi in ((3, 6), (8, 12), (13, 19))], 1)
        .astype(np.float64),
        "gyr_amp": u(0.0, 1.0, (n, 3)) * np.array([0.03, 0.025, 0.012]) + np.array([0.02, 0.015, 0.008]),
        "gyr_ph": u(0, 2 * np.pi, (n, 3)),
        "tex_f": u(1.0, 4.0, (n, 4)), "tex_dir": u(0, 2 * np.pi, (n, 4)),
        "tex_ph": u(0, 2 * np.pi, (n, 4)), "tex_amp": u(0.015, 0.035, (n, 4)),
        # Lateral ventricles: half-width, half-length, lateral offset, vertical offset, splay, bend.
        "v_w": u(0.045, 0.085, n), "v_l": u(0.15, 0.27, n), "v_dx": u(0.07, 0.12, n),
        "v_dy": u(-0.06, 0.06, n), "v_tilt": np.deg2rad(u(3.0, 14.0, n)), "v_bend": u(0.2, 0.9, n),
        "bias_jit": u(-0.25, 0.25, n),
    }
    p.update(_place_lesions(p, labels, rng))
    return p


def _ventricle_frame(p: dict[str, np.ndarray], side: float) -> tuple[np.ndarray, ...]:
    """Centre (head coords) and rotation of the left (side=-1) or right (+1) ventricle."""
    cu = side * p["v_dx"] * p["a"] / 0.78
    cv = p["v_dy"]
    ang = -side * p["v_tilt"]  # posterior ends splay outwards
    return cu, cv, ang


def _ventricle_distance(u: np.ndarray, v: np.ndarray, p: dict[str, np.ndarray], side: float,
                        idx: slice | np.ndarray) -> np.ndarray:
    """Ellipse-normalised distance (<1 inside) of head-coordinate points to one ventricle."""
    cu, cv, ang = (x[idx] for x in _ventricle_frame(p, side))
    shape = (-1,) + (1,) * (u.ndim - 1)
    cu, cv, ang = cu.reshape(shape), cv.reshape(shape), ang.reshape(shape)
    du, dv = u - cu, v - cv
    along = -np.sin(ang) * du + np.cos(ang) * dv
    across = np.cos(ang) * du + np.sin(ang) * dv
    ln = p["v_l"][idx].reshape(shape)
    across = across - side * p["v_bend"][idx].reshape(shape) * 0.5 * (along**2) / ln  # banana shape
    # Frontal horn (along < 0) a little wider than the occipital end.
    w = p["v_w"][idx].reshape(shape) * (1.0 - 0.25 * np.clip(along / ln, -1, 1))
    return np.sqrt((along / ln) ** 2 + (across / w) ** 2)


def _place_lesions(p: dict[str, np.ndarray], labels: np.ndarray,
                   rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Pick a lesion centre/radius per image inside the brain and off the ventricles."""
    n, m, k = labels.shape[0], 24, 16
    radius = rng.uniform(0.10, 0.22, n)
    rho = np.sqrt(rng.uniform(0.0, 1.0, (n, m))) * 0.78
    phi = rng.uniform(0, 2 * np.pi, (n, m))
    shape_amp = rng.uniform(0.0, 0.15, (n, 2))
    shape_ph = rng.uniform(0, 2 * np.pi, (n, 2))
    brightness = rng.uniform(0.88, 1.0, n)
    lu, lv = np.zeros(n), np.zeros(n)
    todo = np.arange(n)
    t = np.linspace(0, 2 * np.pi, k, endpoint=False)
    for _ in range(6):
        if todo.size == 0:
            break
        a, b, r = p["a"][todo, None], p["b"][todo, None], radius[todo, None]
        cu, cv = rho[todo] * a * np.cos(phi[todo]), rho[todo] * b * np.sin(phi[todo])  # (t, m)
        pu = cu[..., None] + 1.1 * r[..., None] * np.cos(t)  # (t, m, k) points on the lesion rim
        pv = cv[..., None] + 1.1 * r[..., None] * np.sin(t)
        inside = (((pu / a[..., None]) ** 2 + (pv / b[..., None]) ** 2) < 0.84**2).all(-1)
        clear = np.ones_like(inside)
        for side in (-1.0, 1.0):
            both = np.concatenate([pu, cu[..., None]], axis=-1)
            bothv = np.concatenate([pv, cv[..., None]], axis=-1)
            clear &= (_ventricle_distance(both, bothv, p, side, todo) > 1.15).all(-1)
        ok = inside & clear
        has = ok.any(1)
        first = ok.argmax(1)
        done = todo[has]
        lu[done] = cu[has, first[has]]
        lv[done] = cv[has, first[has]]
        todo = todo[~has]
        radius[todo] *= 0.8  # retry the rest with a smaller lesion
    if todo.size:  # extremely rare fallback: small lesion in a lateral lobe
        radius[todo] = 0.08
        lu[todo] = 0.5 * p["a"][todo]
        lv[todo] = 0.25 * p["b"][todo]
    return {"l_u": lu, "l_v": lv, "l_r": radius, "l_amp": shape_amp, "l_ph": shape_ph,
            "l_int": brightness, "has_lesion": (labels == 1).astype(np.float64)}


def _col(x: np.ndarray) -> np.ndarray:
    return x.reshape((-1,) + (1,) * 2) if x.ndim == 1 else x.reshape(x.shape[0], x.shape[1], 1, 1)


def _render_anatomy(p: dict[str, np.ndarray], idx: slice, xx: np.ndarray, yy: np.ndarray,
                    size: int) -> np.ndarray:
    """Noise-free tissue intensities in [0, 1], shape (m, S, S)."""
    g = {key: val[idx].astype(np.float32) for key, val in p.items()}
    a, b, rot = _col(g["a"]), _col(g["b"]), _col(g["rot"])
    dx, dy = xx - _col(g["cx"]), yy - _col(g["cy"])
    u = np.cos(rot) * dx + np.sin(rot) * dy
    v = -np.sin(rot) * dx + np.cos(rot) * dy
    r = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    theta = np.arctan2(v / b, u / a)
    pw = (2.0 / size) / a  # one pixel in ellipse-radius units

    def inside(edge: np.ndarray, dist: np.ndarray, width: np.ndarray) -> np.ndarray:
        return np.clip((edge - dist) / width + 0.5, 0.0, 1.0)

    def blend(img: np.ndarray, value: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return img + mask * (value - img)

    img = inside(1.0, r, pw) * _col(g["scalp"])
    img = blend(img, _col(g["csf"]), inside(_col(g["scalp_in"]), r, pw))
    k, amp, ph = _col(g["gyr_k"]), _col(g["gyr_amp"]), _col(g["gyr_ph"])
    waves = np.sin(k * theta[:, None] + ph)  # (m, 3, S, S)
    folds = (amp * waves).sum(1)
    brain = inside(_col(g["brain_r"]) + 0.2 * folds, r, pw)
    texture = _texture(g, rot, xx, yy)
    img = blend(img, _col(g["gm"]) + 0.5 * texture, brain)
    wm_edge = _col(g["wm_r"]) + folds
    # Sulci: thin CSF clefts from the brain surface down to the troughs of the white matter.
    trough = np.clip(1.0 - (1.0 + waves[:, 1]) / 0.08, 0.0, 1.0)
    depth = np.clip((r - wm_edge + 0.02) / 0.05, 0.0, 1.0)
    img = blend(img, _col(g["csf"]) + 0.12, 0.85 * trough * depth * brain)
    img = blend(img, _col(g["wm"]) + texture, inside(wm_edge, r, pw) * brain)
    # Interhemispheric fissure: a thin dark midline, front and back of the ventricles.
    fiss = np.clip(1.0 - np.abs(u) / (1.5 / size + 0.01), 0, 1) * np.clip((np.abs(v) / b - 0.4) / 0.1, 0, 1)
    img = blend(img, _col(g["csf"]) + 0.15, 0.75 * fiss * brain)
    vw = (2.0 / size) / _col(g["v_w"])
    for side in (-1.0, 1.0):
        img = blend(img, _col(g["csf"]), inside(1.0, _ventricle_distance(u, v, g, side, slice(None)), vw))
    sick = np.flatnonzero(g["has_lesion"] > 0)
    if sick.size:
        img[sick] = _add_lesion({key: val[sick] for key, val in g.items()}, img[sick], u[sick], v[sick],
                                brain[sick], size)
    return np.clip(img, 0.0, 1.0)


def _texture(g: dict[str, np.ndarray], rot: np.ndarray, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """Smooth low-frequency tissue texture: a few random plane waves, computed separably."""
    ang = _col(g["tex_dir"]) - rot[:, None]  # wave direction in image coordinates
    kx = np.pi * _col(g["tex_f"]) * np.cos(ang)  # (m, 4, 1, 1)
    ky = np.pi * _col(g["tex_f"]) * np.sin(ang)
    phase = _col(g["tex_ph"])
    x, y = xx[None, None, :1, :], yy[None, None, :, :1]  # (1, 1, 1, S) and (1, 1, S, 1)
    wave = np.sin(kx * x) * np.cos(ky * y + phase) + np.cos(kx * x) * np.sin(ky * y + phase)
    return (_col(g["tex_amp"]) * wave).sum(1)


def _add_lesion(g: dict[str, np.ndarray], img: np.ndarray, u: np.ndarray, v: np.ndarray,
                brain: np.ndarray, size: int) -> np.ndarray:
    """Paint a bright, roughly round, soft-edged lesion with a faint halo (oedema)."""
    du, dv = u - _col(g["l_u"]), v - _col(g["l_v"])
    ang = np.arctan2(dv, du)
    lamp, lph = _col(g["l_amp"]), _col(g["l_ph"])
    harmonics = np.array([3.0, 5.0], dtype=np.float32).reshape(1, 2, 1, 1)
    wobble = 1.0 + (lamp * np.sin(harmonics * ang[:, None] + lph)).sum(1)
    lr = _col(g["l_r"])
    ld = np.sqrt(du**2 + dv**2) / (lr * wobble)
    img = img + np.clip(1.6 - ld, 0.0, 0.6) / 0.6 * 0.12 * brain
    core = _col(g["l_int"]) - 0.06 * np.clip(1.0 - ld, 0, 1) * np.cos(6.0 * ld)
    mask = np.clip((1.0 - ld) / ((2.0 / size) / lr) + 0.5, 0.0, 1.0) * brain
    return img + mask * (core - img)


def _acquire(img: np.ndarray, scanner: ScannerProfile, bias_jit: np.ndarray, xx: np.ndarray,
             yy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Apply the scanner: gamma, gain, smooth bias field, Rician-like noise, clip to [0, 1]."""
    out = np.power(img, np.float32(scanner.gamma)) * np.float32(scanner.gain)
    ang = scanner.bias_angle + _col(bias_jit.astype(np.float32))
    ramp = np.cos(ang) * xx + np.sin(ang) * yy
    field = np.exp(np.float32(scanner.bias_strength) * (ramp - 0.15 * (xx**2 + yy**2)))
    out = out * field
    sigma = scanner.noise_sigma
    n1 = rng.standard_normal(out.shape, dtype=np.float32) * np.float32(sigma)
    n2 = rng.standard_normal(out.shape, dtype=np.float32) * np.float32(sigma)
    out = np.sqrt((out + n1) ** 2 + n2**2)
    return np.clip(out, 0.0, 1.0)


def render_phantoms(labels: np.ndarray, image_size: int, scanner: ScannerProfile,
                    rng: np.random.Generator) -> np.ndarray:
    """Render one phantom per label (0 normal, 1 lesion) as float32 (N, 1, S, S) in [0, 1]."""
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASS_NAMES)):
        raise ValueError(f"phantom labels must be 0 or 1, got values in [{labels.min()}, {labels.max()}]")
    if image_size < 4:
        raise ValueError(f"image_size must be >= 4, got {image_size}")
    n, size = labels.shape[0], int(image_size)
    params = _draw_anatomy(labels, rng)
    c = ((np.arange(size) + 0.5) / size * 2.0 - 1.0).astype(np.float32)
    yy, xx = np.meshgrid(c, c, indexing="ij")
    out = np.empty((n, 1, size, size), dtype=np.float32)
    for start in range(0, n, _CHUNK):
        idx = slice(start, min(n, start + _CHUNK))
        img = _render_anatomy(params, idx, xx, yy, size)
        out[idx, 0] = _acquire(img, scanner, params["bias_jit"][idx], xx, yy, rng)
    return out
