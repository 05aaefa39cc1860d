"""Liveries: a distinctive, high-saturation paint job the base world never shows (the DreamBooth subject).

`world.livery` names one of LIVERIES; each car of a scene then wears it with probability
`world.livery_fraction`. The choice is drawn from its own generator, seeded from (seed, scene index,
"livery"), and only when a livery is set: the scene's own random draws are untouched, so a world
without a livery renders byte-identically to one from before this option existed.

A livery is the body in its primary colour (the car's "paint") and, unless it is solid, blocks of its
secondary colour (the "livery" role) as decals on the body's sides, front and back. The blocks are about a metre
across: at 128x256 a car 15 m ahead is about 25 px wide, so each block covers several pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drivesim.synth import shapes as sh

LIVERY_STREAM = int.from_bytes(b"livery", "big")  # the generator's extra seed word


@dataclass(frozen=True)
class Livery:
    primary: tuple[float, float, float]  # RGB 0..1, the body
    secondary: tuple[float, float, float]  # RGB 0..1, the blocks
    pattern: str  # checker | stripes | solid (the body alone: no blocks)


# Magenta (hue ~310 deg, saturation ~0.95): no colour of the base world comes near it.
LIVERIES = {
    "magenta_checker": Livery((0.95, 0.05, 0.75), (1.0, 0.88, 0.0), "checker"),
    "magenta_stripes": Livery((0.95, 0.05, 0.75), (1.0, 0.88, 0.0), "stripes"),
    # The whole body in magenta: what a tiny autoencoder's 8x-downsampled latents can carry (a checker of
    # ~1 m blocks blurs to salmon at 128x256, measured in benchmarks/bench_lora_livery.py).
    "magenta_solid": Livery((0.95, 0.05, 0.75), (0.95, 0.05, 0.75), "solid"),
}
LIVERY_KINDS = ("car",)
# What counts as a pixel of the livery's primary colour in uint8 RGB (OpenCV HSV: hue in 2-degree units,
# saturation and value 0..255). One definition for the benchmark and the tests.
PRIMARY_HUE_DEG = (285, 335)
PRIMARY_MIN_SATURATION = 100
PRIMARY_MIN_VALUE = 64


def get_livery(name: str) -> Livery:
    if name not in LIVERIES:
        raise ValueError(f"world.livery must be one of {tuple(LIVERIES)} (or null), got {name!r}")
    return LIVERIES[name]


def primary_pixels(rgb: np.ndarray) -> np.ndarray:
    """(H, W) bool: the livery's primary colour (hue 285-335 deg, saturated, not dark) in uint8 RGB."""
    import cv2

    hsv = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2HSV)
    hue = hsv[..., 0].astype(np.int32) * 2
    return ((hue >= PRIMARY_HUE_DEG[0]) & (hue <= PRIMARY_HUE_DEG[1]) & (hsv[..., 1] >= PRIMARY_MIN_SATURATION)
            & (hsv[..., 2] >= PRIMARY_MIN_VALUE))


def choose_wearers(seed: int, index: int, kinds: list[str], fraction: float) -> list[bool]:
    """Which agents wear the livery: each car with probability `fraction`, from the livery's own stream."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, index, LIVERY_STREAM]))
    draws = rng.random(len(kinds))
    return [bool(k in LIVERY_KINDS and u < fraction) for k, u in zip(kinds, draws)]


def _cells(lo: float, hi: float, size: float) -> np.ndarray:
    n = max(int(round((hi - lo) / size)), 1)
    return np.linspace(lo, hi, n + 1)


def _face(decals: list[tuple[int, float, float, tuple[float, float], tuple[float, float]]], axis: int, value: float,
          sign: float, span: tuple[float, float], z: tuple[float, float], pattern: str) -> None:
    """Secondary blocks on one face: a checker of ~1.25 m x half-height cells, or one stripe across the middle."""
    if pattern == "stripes":
        third = (z[1] - z[0]) / 3.0
        decals.append((axis, value, sign, span, (z[0] + third, z[1] - third)))
        return
    us = _cells(span[0], span[1], 1.25)
    zs = np.linspace(z[0], z[1], 3)
    for i in range(len(us) - 1):
        for j in range(2):
            if (i + j) % 2 == 0:
                decals.append((axis, value, sign, (float(us[i]), float(us[i + 1])), (float(zs[j]), float(zs[j + 1]))))


def apply_livery(shape: sh.Shape, livery: Livery) -> sh.Shape:
    """`shape` with the livery's blocks on its first paint part; drawn before its own decals (lights, wheels)."""
    paint = [i for i, r in enumerate(shape.roles) if r == sh.PAINT]
    if not paint or livery.pattern == "solid":
        return shape
    lo, hi = shape.lo[paint[0]], shape.hi[paint[0]]
    z = (float(lo[2]) + 0.15 * float(hi[2] - lo[2]), float(hi[2]))  # above the bumper strip
    spec: list[tuple[int, float, float, tuple[float, float], tuple[float, float]]] = []
    for side, y in ((1.0, float(hi[1])), (-1.0, float(lo[1]))):
        _face(spec, 1, y, side, (float(lo[0]), float(hi[0])), z, livery.pattern)
    for side, x in ((1.0, float(hi[0])), (-1.0, float(lo[0]))):
        _face(spec, 0, x, side, (float(lo[1]), float(hi[1])), z, livery.pattern)
    b = sh._Builder()  # shapes.py offers no public builder
    for axis, value, sign, a, zz in spec:
        b.decal(axis, value, sign, a, zz, sh.LIVERY)
    own = b.build()
    return sh.Shape(shape.lo, shape.hi, shape.roles, shape.layers,
                    np.concatenate([own.decals, shape.decals]), np.concatenate([own.decal_normals, shape.decal_normals]),
                    own.decal_roles + shape.decal_roles)
