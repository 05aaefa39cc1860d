"""Flat shading of polygons: sun and sky light, the ego's headlights at night, lights, fog."""

from __future__ import annotations

import numpy as np

from drivesim.synth import shapes as sh
from drivesim.synth.style import Style

ROLE_INDEX = {r: i for i, r in enumerate(sh.ROLES)}
_PAINT = ROLE_INDEX[sh.PAINT]
_RED, _GREEN = ROLE_INDEX[sh.RED_LIGHT], ROLE_INDEX[sh.GREEN_LIGHT]


class Shader:
    """Per-style colour table over shapes.ROLES; `shade` colours one frame's polygons."""

    def __init__(self, style: Style, agent_colours: np.ndarray,
                 livery_colour: tuple[float, float, float] | None = None) -> None:
        self.style = style
        self.agent_colours = agent_colours
        self.table = np.zeros((len(sh.ROLES), 3))
        self.emissive = np.zeros(len(sh.ROLES), dtype=bool)
        for r, k in ROLE_INDEX.items():
            if r in sh.EMISSIVE:
                self.table[k] = style.emissive_colour(r)
                self.emissive[k] = style.headlights or r in (sh.RED_LIGHT, sh.GREEN_LIGHT)
            elif r == sh.LIVERY:
                self.table[k] = livery_colour if livery_colour is not None else (0.0, 0.0, 0.0)
            elif r != sh.PAINT:
                self.table[k] = style.base_colour(r)

    def shade(self, roles: np.ndarray, owner: np.ndarray, normals: np.ndarray, cam_quads: np.ndarray,
              red_on: bool) -> np.ndarray:
        """RGB 0..1 per polygon; `owner` >= 0 marks agents (whose "paint" is their own colour)."""
        style = self.style
        base = self.table[roles]
        emissive = self.emissive[roles].copy()
        paint = (roles == _PAINT) & (owner >= 0)
        if paint.any():
            base[paint] = self.agent_colours[owner[paint]]
        dark = ((roles == _RED) & (not red_on)) | ((roles == _GREEN) & red_on)
        base[dark] *= 0.2
        emissive[dark] = False
        centre = cam_quads.mean(axis=1)
        dist = np.linalg.norm(centre, axis=1)
        light = style.ambient + style.sun * np.clip(normals @ style.sun_dir, 0.0, None) + 0.12 * normals[:, 2]
        if style.headlight_gain > 0:
            forward = np.clip(centre[:, 2], 0.1, None)
            cone = np.exp(-(centre[:, 0] / forward / 0.45) ** 2) * (centre[:, 2] > 0)
            light = light + style.headlight_gain * cone * np.exp(-dist / 35.0)
        if style.wet:
            light = light * 0.9
        colour = base * light[:, None]
        colour[emissive] = base[emissive]
        fog = np.exp(-dist / style.fog_distance)
        fog = np.where(emissive, np.sqrt(fog), fog)
        colour = colour * fog[:, None] + style.fog_colour[None, :] * (1.0 - fog[:, None])
        return np.clip(colour, 0.0, 1.0)
