"""The road: a smooth centre line (curves, gentle hills) and its cross-section of lanes.

Positions on the road are (s, d): arc length along the centre line and lateral offset (left positive).
Right-hand traffic: forward lanes have d < 0, oncoming lanes d > 0, d = 0 is the centre divider.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STEP_M = 0.5


@dataclass(frozen=True)
class CrossSection:
    """Lateral layout in metres; lanes first, then a shoulder (parking / cycling) and a sidewalk per side."""

    forward_lanes: int = 2
    backward_lanes: int = 1
    lane_width: float = 3.5
    shoulder: float = 2.5
    sidewalk: float = 3.0

    @property
    def right_kerb(self) -> float:
        return -self.forward_lanes * self.lane_width - self.shoulder

    @property
    def left_kerb(self) -> float:
        return self.backward_lanes * self.lane_width + self.shoulder

    def lane_centre(self, lane: int) -> float:
        """Lateral offset of lane `lane`: 0.. forward_lanes-1 forward (0 rightmost), negative = oncoming."""
        if lane >= 0:
            return -(self.forward_lanes - lane - 0.5) * self.lane_width
        return (-lane - 0.5) * self.lane_width

    def lane_centres(self) -> list[tuple[float, int]]:
        """(offset, direction) of every lane, right to left; direction +1 forward, -1 oncoming."""
        out = [(self.lane_centre(i), 1) for i in range(self.forward_lanes)]
        out += [(self.lane_centre(-1 - i), -1) for i in range(self.backward_lanes)]
        return out


class Road:
    """Centre line sampled every STEP_M metres from `s_min`; everything else interpolates."""

    def __init__(self, rng: np.random.Generator, s_min: float, s_max: float, hills: bool,
                 section: CrossSection, start_xy: tuple[float, float] = (0.0, 0.0),
                 start_heading: float = 0.0) -> None:
        self.section = section
        self.s = np.arange(s_min, s_max + STEP_M, STEP_M)
        n = len(self.s)
        # Curvature: piecewise-constant pieces (straights and arcs), smoothed into clothoid-like ramps.
        kappa = np.zeros(n)
        i = 0
        while i < n:
            length = int(rng.uniform(60.0, 220.0) / STEP_M)
            if rng.random() < 0.7:
                kappa[i:i + length] = rng.choice([-1.0, 1.0]) * rng.uniform(1 / 400.0, 1 / 120.0)
            i += length
        kernel = np.hanning(int(40.0 / STEP_M))
        kappa = np.convolve(kappa, kernel / kernel.sum(), mode="same")
        heading = start_heading + np.concatenate([[0.0], np.cumsum(kappa[:-1] * STEP_M)])
        zero = int(np.argmin(np.abs(self.s)))
        heading -= heading[zero] - start_heading
        x = np.concatenate([[0.0], np.cumsum(np.cos(heading[:-1]) * STEP_M)])
        y = np.concatenate([[0.0], np.cumsum(np.sin(heading[:-1]) * STEP_M)])
        self.x = x - x[zero] + start_xy[0]
        self.y = y - y[zero] + start_xy[1]
        self.heading = heading
        self.kappa = kappa
        if hills:
            z = np.zeros(n)
            for _ in range(2):
                wavelength = rng.uniform(250.0, 600.0)
                amplitude = rng.uniform(0.3, 1.0) * wavelength / 400.0  # crests hide little
                z += amplitude * np.sin(2 * np.pi * self.s / wavelength + rng.uniform(0, 2 * np.pi))
            self.z = z - z[zero]
        else:
            self.z = np.zeros(n)
        self.slope = np.gradient(self.z, STEP_M)

    def _interp(self, s: np.ndarray, values: np.ndarray) -> np.ndarray:
        return np.interp(s, self.s, values)

    def heading_at(self, s: np.ndarray | float) -> np.ndarray:
        return self._interp(np.asarray(s, dtype=float), self.heading)

    def pitch_at(self, s: np.ndarray | float) -> np.ndarray:
        return np.arctan(self._interp(np.asarray(s, dtype=float), self.slope))

    def curvature_at(self, s: np.ndarray | float) -> np.ndarray:
        return self._interp(np.asarray(s, dtype=float), self.kappa)

    def points(self, s: np.ndarray | float, d: np.ndarray | float, h: np.ndarray | float = 0.0) -> np.ndarray:
        """World points (..., 3) at arc length s, lateral offset d, height h above the road surface."""
        s_arr, d_arr, h_arr = np.broadcast_arrays(np.asarray(s, float), np.asarray(d, float),
                                                  np.asarray(h, float))
        head = self._interp(s_arr, self.heading)
        x = self._interp(s_arr, self.x) - np.sin(head) * d_arr
        y = self._interp(s_arr, self.y) + np.cos(head) * d_arr
        z = self._interp(s_arr, self.z) + h_arr
        return np.stack([x, y, z], axis=-1)
