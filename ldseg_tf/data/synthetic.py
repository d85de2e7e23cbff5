"""Seeded synthetic segmentation datasets for the demo and the tests.

Three small, fast, numpy-only generators that mimic the paper's modalities:

- `glands`: H&E-like RGB histology with glands (binary, like GlaS).
- `echo`: apical-four-chamber-like ultrasound with speckle (LV and LA, like CAMUS).
- `knee`: a 3D volume with a femur-like and a tibia-like structure (like OAI knee MRI).
- `lines`: fundus-like RGB images with a tree of thin curved lines, 1-2 pixels
  wide whatever the image size (binary, like DRIVE vessels): the hard case for a
  small latent.

Example `i` of a set is drawn from `np.random.default_rng([seed, i])`, so it does not
depend on how many examples are asked for. Shapes are expressed in normalized
coordinates, so any spatial size works and the anatomy scales with it.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import tensorflow as tf

# Colours (RGB in [0, 1]) of eosin-stained stroma, haematoxylin-stained epithelium
# and nuclei, and the nearly unstained gland lumen.
_STROMA_RGB = np.array([0.91, 0.66, 0.80])
_EPITHELIUM_RGB = np.array([0.58, 0.33, 0.64])
_NUCLEUS_RGB = np.array([0.36, 0.18, 0.48])
_LUMEN_RGB = np.array([0.97, 0.93, 0.96])


# ----------------------------------------------------------------------- helpers
def _check_n(n) -> int:
    if int(n) != n or n < 0:
        raise ValueError(f"n must be a non-negative integer; got {n!r}.")
    return int(n)


def _check_size(size: Sequence[int], rank: int, name: str) -> Tuple[int, ...]:
    size = tuple(size)
    if len(size) != rank or any(int(s) != s or s < 1 for s in size):
        raise ValueError(f"{name} must be {rank} positive integers; got {size!r}.")
    return tuple(int(s) for s in size)


def _gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Periodic Gaussian blur via the FFT (fine for noise fields, which have no
    edges that could bleed across the border)."""
    spectrum = np.fft.fftn(x)
    for axis, size in enumerate(x.shape):
        freq = np.fft.fftfreq(size)
        shape = [1] * x.ndim
        shape[axis] = size
        spectrum *= np.exp(-2.0 * (np.pi * sigma * freq) ** 2).reshape(shape)
    return np.fft.ifftn(spectrum).real


def _smooth_noise(rng: np.random.Generator, shape: Tuple[int, ...], sigma: float) -> np.ndarray:
    """Zero-mean, unit-variance noise correlated over about `sigma` pixels."""
    noise = _gaussian_blur(rng.standard_normal(shape), sigma)
    return (noise - noise.mean()) / max(noise.std(), 1e-8)


def _unit_grid(shape: Tuple[int, ...]) -> list:
    """Pixel-centre coordinates in (0, 1) along each axis, broadcastable."""
    axes = []
    for axis, size in enumerate(shape):
        view = [1] * len(shape)
        view[axis] = size
        axes.append(((np.arange(size) + 0.5) / size).reshape(view))
    return axes


def _stack_examples(example_fn, n, size, channels: int, seed: int, rank: int = 2,
                    size_name: str = "size"):
    """`(images float32 (n, *size, channels), masks int32 (n, *size))` with
    example `i` drawn by `example_fn(np.random.default_rng([seed, i]), size)`.

    Seeding each example by its index keeps example `i` the same whatever `n`
    is. `size` is checked as `rank` positive integers (`size_name` in the error).
    """
    n = _check_n(n)
    size = _check_size(size, rank, size_name)
    images = np.empty((n, *size, channels), np.float32)
    masks = np.empty((n, *size), np.int32)
    for i in range(n):
        images[i], masks[i] = example_fn(np.random.default_rng([seed, i]), size)
    return images, masks


def _ellipse_radius(dy, dx, ry, rx, angle):
    """Normalized radius of points (dy, dx) w.r.t. a rotated ellipse: < 1 inside."""
    cos, sin = np.cos(angle), np.sin(angle)
    u = (cos * dy + sin * dx) / ry
    v = (-sin * dy + cos * dx) / rx
    return np.sqrt(u**2 + v**2), np.arctan2(v, u)


# ------------------------------------------------------------------------ glands
def _gland_example(rng: np.random.Generator, size: Tuple[int, int]):
    height, width = size
    # Lengths are in units of the shorter side, so glands stay round on
    # non-square images.
    unit = min(height, width)
    y = ((np.arange(height) + 0.5) / unit)[None, :, None]
    x = ((np.arange(width) + 0.5) / unit)[None, None, :]
    extent_y, extent_x = height / unit, width / unit

    count = int(rng.integers(2, 7))
    target = rng.uniform(0.2, 0.38)
    areas = target * extent_y * extent_x * rng.dirichlet(np.full(count, 3.0))
    radii = np.sqrt(areas / np.pi)
    elongation = np.sqrt(rng.uniform(0.55, 1.0, count))
    ry, rx = radii / elongation, radii * elongation
    angles = rng.uniform(0.0, np.pi, count)

    # Real glands seldom overlap: rejection-sample centres that keep them apart;
    # centres may lie on the border, so glands can be cut by the field of view.
    centres = np.empty((count, 2))
    for k in range(count):
        for _ in range(50):
            c = rng.uniform((0.0, 0.0), (extent_y, extent_x))
            gaps = np.hypot(*(centres[:k] - c).T) - 0.8 * (radii[:k] + radii[k])
            if np.all(gaps > 0):
                break
        centres[k] = c

    # Irregular outlines: low-order harmonics modulate the boundary radius.
    harmonics = np.arange(2, 5)
    amps = rng.uniform(0.0, 0.08, (count, harmonics.size))
    phases = rng.uniform(0.0, 2 * np.pi, (count, harmonics.size))
    rho, theta = _ellipse_radius(
        y - centres[:, 0, None, None],
        x - centres[:, 1, None, None],
        ry[:, None, None],
        rx[:, None, None],
        angles[:, None, None],
    )
    wobble = 1.0 + np.sum(
        amps[:, :, None, None]
        * np.cos(harmonics[None, :, None, None] * theta[:, None] + phases[:, :, None, None]),
        axis=1,
    )
    rel = rho / wobble  # < 1 inside gland k

    # Overlaps and cropping by the border shrink the foreground; rescale the
    # glands until the fraction is realistic.
    for _ in range(6):
        fraction = np.mean(rel.min(axis=0) < 1.0)
        if 0.17 <= fraction <= 0.43:
            break
        scale = np.sqrt(np.clip(target / max(fraction, 1e-3), 0.5, 2.0))
        rel = rel / scale
    mask = rel.min(axis=0) < 1.0

    lumen_fraction = rng.uniform(0.35, 0.65, count)
    lumen = np.any(rel < lumen_fraction[:, None, None], axis=0)
    epithelium = mask & ~lumen

    # Nuclei dot the stroma as well as the epithelium, so a single colour
    # threshold does not segment the glands; the peaks of fine-grained noise give
    # blobs of about a nucleus' size far faster than drawing discs.
    nuclei = _smooth_noise(rng, (height, width), sigma=0.012 * unit) > 2.0
    nuclei &= ~lumen

    stain = 1.0 + rng.normal(0.0, 0.03, 3)  # per-slide stain variation
    image = np.broadcast_to(_STROMA_RGB, (height, width, 3)).copy()
    image[epithelium] = _EPITHELIUM_RGB
    image[lumen] = _LUMEN_RGB
    image[nuclei] = _NUCLEUS_RGB
    image *= stain
    texture = _smooth_noise(rng, (height, width), sigma=0.02 * unit)
    image += 0.05 * texture[..., None] + rng.normal(0.0, 0.02, image.shape)
    return np.clip(image, 0.0, 1.0), mask


def make_glands_2d(n: int, size: Tuple[int, int] = (64, 64), seed: int = 0):
    """Gland-like H&E histology images with binary gland masks.

    Each image holds 2 to 6 irregular elliptical glands (purple epithelium around a
    pale lumen) on pink, textured stroma with scattered nuclei; glands may be cut by
    the border and cover roughly 15-45% of the pixels.

    Args:
        n: number of examples.
        size: `(H, W)`.
        seed: base seed; example `i` comes from `np.random.default_rng([seed, i])`.

    Returns:
        `(images, masks)`: float32 `(n, H, W, 3)` in [0, 1] and int32 `(n, H, W)`
        with values {0: background, 1: gland}.
    """
    return _stack_examples(_gland_example, n, size, 3, seed)


# -------------------------------------------------------------------------- echo
def _echo_example(rng: np.random.Generator, size: Tuple[int, int]):
    # Depth p runs down from the transducer, lateral q is centred on the apex.
    p, q = _unit_grid(size)
    q = q - 0.5
    apex = -0.02
    radius = np.hypot(p - apex, q)
    half_angle = rng.uniform(0.65, 0.78)
    depth = rng.uniform(0.92, 1.0)
    fov = (radius <= depth) & (np.abs(np.arctan2(q, p - apex)) <= half_angle)

    # The LV hangs below the apex with its long axis roughly along the beam; the LA
    # continues that axis beyond the mitral annulus.
    tilt = rng.uniform(-0.3, 0.05)
    axis = np.array([np.cos(tilt), np.sin(tilt)])
    lv_centre = np.array([rng.uniform(0.33, 0.40), rng.uniform(0.02, 0.10)])
    lv_long, lv_short = rng.uniform(0.19, 0.24), rng.uniform(0.1, 0.135)
    annulus = rng.uniform(0.04, 0.06)
    la_long, la_short = rng.uniform(0.09, 0.12), rng.uniform(0.08, 0.105)
    la_centre = lv_centre + axis * (lv_long + annulus + la_long)

    def ellipse(centre, ry, rx):
        return _ellipse_radius(p - centre[0], q - centre[1], ry, rx, tilt)[0]

    lv_wall = rng.uniform(0.045, 0.065)
    lv_rel = ellipse(lv_centre, lv_long, lv_short)
    la_rel = ellipse(la_centre, la_long, la_short)
    myocardium = (ellipse(lv_centre, lv_long + lv_wall, lv_short + lv_wall) < 1.0) | (
        ellipse(la_centre, la_long + 0.6 * lv_wall, la_short + 0.6 * lv_wall) < 1.0
    )
    lv = (lv_rel < 1.0) & fov
    la = (la_rel < 1.0) & fov & ~lv

    base = 0.32 + 0.06 * _smooth_noise(rng, size, sigma=0.05 * min(size))
    base = np.where(myocardium, rng.uniform(0.65, 0.8), base)
    base = np.where(lv | la, rng.uniform(0.06, 0.1), base)
    base *= 1.0 - 0.35 * radius / depth  # attenuation with depth
    # Fully developed speckle: multiplicative, gamma-distributed with unit mean.
    looks = 3.0
    speckle = rng.gamma(looks, 1.0 / looks, size)
    image = np.where(fov, base * speckle, 0.0)
    mask = np.where(lv, 1, np.where(la, 2, 0))
    return np.clip(image, 0.0, 1.0)[..., None], mask


def make_echo_2d(n: int, size: Tuple[int, int] = (64, 64), seed: int = 0):
    """Apical-four-chamber-like ultrasound images with LV and LA masks.

    A fan-shaped field of view holds a dark, elongated left ventricle with a bright
    myocardial wall and a smaller dark left atrium below it, under multiplicative
    gamma speckle and depth attenuation; outside the fan the image is 0.

    Args:
        n: number of examples.
        size: `(H, W)`; the fan's apex is at the top centre.
        seed: base seed; example `i` comes from `np.random.default_rng([seed, i])`.

    Returns:
        `(images, masks)`: float32 `(n, H, W, 1)` in [0, 1] and int32 `(n, H, W)`
        with values {0: background, 1: LV, 2: LA}.
    """
    return _stack_examples(_echo_example, n, size, 1, seed)


# -------------------------------------------------------------------------- knee
def _knee_example(rng: np.random.Generator, shape: Tuple[int, int, int]):
    # Axis 1 (H) is superior-inferior, so every H-W slice shows both bones.
    z, y, x = _unit_grid(shape)
    zc, xc = rng.uniform(0.45, 0.55, 2)
    joint = rng.uniform(0.45, 0.55)
    # At least 1.5 voxels wide, so a full empty row always separates the bones.
    gap = max(rng.uniform(0.04, 0.07), 1.5 / shape[1])
    femur_end, tibia_start = joint - gap / 2, joint + gap / 2

    def ellipsoid(cz, cy, cx, rz, ry, rx):
        return ((z - cz) / rz) ** 2 + ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 < 1.0

    def shaft(cz, cx, rz, rx):
        return ((z - cz) / rz) ** 2 + ((x - cx) / rx) ** 2 < 1.0

    def jitter():
        return rng.uniform(0.9, 1.1)

    # Femur: a shaft ending in two condyles that are flattened by the joint plane.
    condyle_r = (0.26 * jitter(), 0.17 * jitter(), 0.2 * jitter())
    condyle_y = femur_end - 0.75 * condyle_r[1]
    spread = 0.13 * jitter()
    femur = (
        ellipsoid(zc, condyle_y, xc - spread, *condyle_r)
        | ellipsoid(zc, condyle_y, xc + spread, *condyle_r)
        | (shaft(zc, xc, 0.15 * jitter(), 0.14 * jitter()) & (y < condyle_y))
    ) & (y < femur_end)
    # Tibia: a wide plateau below the gap on top of a narrower shaft.
    plateau_r = (0.28 * jitter(), 0.14 * jitter(), 0.36 * jitter())
    plateau_y = tibia_start + 0.75 * plateau_r[1]
    tibia = (
        ellipsoid(zc, plateau_y, xc, *plateau_r)
        | (shaft(zc, xc, 0.14 * jitter(), 0.13 * jitter()) & (y > plateau_y))
    ) & (y > tibia_start)

    image = 0.25 + 0.06 * _smooth_noise(rng, shape, sigma=0.15 * min(shape))
    marrow = 0.04 * _smooth_noise(rng, shape, sigma=0.08 * min(shape))
    image = np.where(femur, rng.uniform(0.65, 0.8) + marrow, image)
    image = np.where(tibia, rng.uniform(0.5, 0.62) + marrow, image)
    image = image + rng.normal(0.0, 0.04, shape)
    mask = np.where(femur, 1, np.where(tibia, 2, 0))
    return np.clip(image, 0.0, 1.0)[..., None], mask


def make_knee_3d(n: int, shape: Tuple[int, int, int] = (32, 32, 32), seed: int = 0):
    """Knee-like volumes with a femur-like and a tibia-like structure.

    Along axis 1 (H) a bright femur (shaft and two condyles) sits above a slightly
    darker tibia (plateau and shaft), separated by a thin joint gap; smooth bias and
    marrow fields plus Gaussian noise vary the intensities.

    Args:
        n: number of examples.
        shape: `(D, H, W)`.
        seed: base seed; example `i` comes from `np.random.default_rng([seed, i])`.

    Returns:
        `(images, masks)`: float32 `(n, D, H, W, 1)` in [0, 1] and int32
        `(n, D, H, W)` with values {0: background, 1: femur, 2: tibia}.
    """
    return _stack_examples(_knee_example, n, shape, 1, seed, rank=3, size_name="shape")


# ------------------------------------------------------------------------- lines
def _lines_example(rng: np.random.Generator, size: Tuple[int, int]):
    h, w = size
    yy, xx = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
    dist = np.full(size, np.inf)
    width = np.zeros(size)
    # A few vessel-like trees: smooth random walks from near the border inwards,
    # each spawning a branch or two; half-width 0.5-0.8 px, so masks are 1-2 px wide.
    for _ in range(rng.integers(2, 4)):
        y, x = rng.uniform(0.1, 0.9) * h, rng.uniform(0.1, 0.9) * w
        heading = rng.uniform(0, 2 * np.pi)
        walkers = [(y, x, heading, rng.uniform(0.5, 0.8), int(rng.integers(30, 60)))]
        while walkers:
            y, x, heading, half, length = walkers.pop()
            step = max(h, w) / 48.0
            for k in range(length):
                heading += rng.normal(0, 0.18)
                ny, nx = y + step * np.sin(heading), x + step * np.cos(heading)
                # Distance of every pixel to the segment (y, x)-(ny, nx).
                dy, dx = ny - y, nx - x
                tpar = np.clip(((yy - y) * dy + (xx - x) * dx) / (dy * dy + dx * dx + 1e-9),
                               0, 1)
                d = np.hypot(yy - (y + tpar * dy), xx - (x + tpar * dx))
                closer = d < dist
                dist = np.where(closer, d, dist)
                width = np.where(closer, half, width)
                y, x = ny, nx
                if not (0 <= y < h and 0 <= x < w):
                    break
                if k > 5 and rng.random() < 0.04 and len(walkers) < 3:
                    walkers.append((y, x, heading + rng.choice([-1, 1]) * rng.uniform(0.4, 0.9),
                                    max(0.5, half * 0.8), int(rng.integers(10, 30))))
    mask = (dist <= width).astype(np.int32)
    # Soft line profile (the image is blurrier than the mask, as in fundus photos).
    profile = np.exp(-0.5 * (dist / np.maximum(width, 0.5)) ** 2)
    background = 0.55 + 0.08 * _smooth_noise(rng, size, max(h, w) / 8)
    darkness = rng.uniform(0.25, 0.4)
    base = background - darkness * profile + rng.normal(0, 0.03, size)
    tint = np.array([1.0, 0.55, 0.3]) * rng.uniform(0.9, 1.1, 3)
    image = np.clip(base[..., None] * tint, 0.0, 1.0)
    return image.astype(np.float32), mask


def make_lines_2d(n: int, size: Tuple[int, int] = (64, 64), seed: int = 0):
    """Fundus-like images with trees of thin dark lines (vessel-like).

    Lines are 1-2 pixels wide at any image size, so larger images only make the
    structures relatively thinner: the test case for the latent's capacity.

    Args:
        n: number of examples.
        size: `(H, W)`.
        seed: base seed; example `i` comes from `np.random.default_rng([seed, i])`.

    Returns:
        `(images, masks)`: float32 `(n, H, W, 3)` in [0, 1] and int32 `(n, H, W)`
        with values {0: background, 1: line}.
    """
    return _stack_examples(_lines_example, n, size, 3, seed)


# ---------------------------------------------------------------------- registry
SYNTHETIC_SETS = {
    "lines": dict(
        fn=make_lines_2d,
        num_classes=2,
        channels=3,
        spatial_dims=2,
        class_names=("background", "line"),
    ),
    "glands": dict(
        fn=make_glands_2d,
        num_classes=2,
        channels=3,
        spatial_dims=2,
        class_names=("background", "gland"),
    ),
    "echo": dict(
        fn=make_echo_2d,
        num_classes=3,
        channels=1,
        spatial_dims=2,
        class_names=("background", "LV", "LA"),
    ),
    "knee": dict(
        fn=make_knee_3d,
        num_classes=3,
        channels=1,
        spatial_dims=3,
        class_names=("background", "femur", "tibia"),
    ),
}


def synthetic_arrays(name: str, n: int, spatial_shape: Sequence[int], seed: int = 0):
    """`(images, masks)` of the synthetic set `name` (see `SYNTHETIC_SETS`).

    Args:
        name: "glands", "echo", "knee" or "lines".
        n: number of examples.
        spatial_shape: `(H, W)` for 2D sets, `(D, H, W)` for "knee".
        seed: base seed.

    Returns:
        float32 images `(n, *spatial_shape, channels)` in [0, 1] and int32 masks
        `(n, *spatial_shape)`.
    """
    if name not in SYNTHETIC_SETS:
        raise ValueError(
            f"unknown synthetic dataset {name!r}; known: {sorted(SYNTHETIC_SETS)}."
        )
    spec = SYNTHETIC_SETS[name]
    spatial_shape = tuple(spatial_shape)
    if len(spatial_shape) != spec["spatial_dims"]:
        raise ValueError(
            f"synthetic dataset {name!r} is {spec['spatial_dims']}D and needs a spatial "
            f"shape of rank {spec['spatial_dims']}; got {spatial_shape} "
            f"(rank {len(spatial_shape)})."
        )
    return spec["fn"](n, spatial_shape, seed=seed)


def synthetic_dataset(
    name: str, n: int, spatial_shape: Sequence[int], seed: int = 0
) -> tf.data.Dataset:
    """An unbatched `tf.data.Dataset` of `(image float32, mask int32)` pairs from
    `synthetic_arrays`; images are `(*spatial_shape, channels)`, masks
    `spatial_shape`."""
    images, masks = synthetic_arrays(name, n, spatial_shape, seed=seed)
    return tf.data.Dataset.from_tensor_slices((images, masks))
