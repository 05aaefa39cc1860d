"""Look of a scene: colours by role, sky, light and fog for each time of day and weather."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drivesim.synth import shapes as sh

TIMES_OF_DAY = ("day", "dusk", "night")
WEATHERS = ("clear", "rain", "fog")
CROWDEDNESS = ("sparse", "moderate", "crowded")

_BASE = {
    sh.GLASS: (0.12, 0.16, 0.2), sh.TYRE: (0.05, 0.05, 0.05), sh.DARK: (0.12, 0.12, 0.13),
    sh.SKIN: (0.85, 0.65, 0.5), sh.TRUNK: (0.35, 0.22, 0.12), sh.LEAVES: (0.18, 0.42, 0.15),
    sh.CONCRETE: (0.62, 0.6, 0.56), sh.METAL: (0.45, 0.46, 0.48),
    "road": (0.3, 0.3, 0.31), "sidewalk": (0.55, 0.54, 0.5), "grass": (0.28, 0.45, 0.2),
    "white_line": (0.92, 0.92, 0.9), "yellow_line": (0.9, 0.75, 0.15),
}
_EMISSIVE_ON = {sh.HEADLIGHT: (1.0, 0.97, 0.85), sh.TAILLIGHT: (0.95, 0.08, 0.05), sh.LAMP: (1.0, 0.85, 0.55),
                sh.RED_LIGHT: (1.0, 0.1, 0.05), sh.GREEN_LIGHT: (0.1, 1.0, 0.4)}
_EMISSIVE_OFF = {sh.HEADLIGHT: (0.8, 0.8, 0.78), sh.TAILLIGHT: (0.55, 0.1, 0.08), sh.LAMP: (0.7, 0.7, 0.65),
                 sh.RED_LIGHT: (0.25, 0.05, 0.05), sh.GREEN_LIGHT: (0.05, 0.25, 0.1)}


@dataclass(frozen=True)
class Style:
    time_of_day: str
    weather: str
    sky_top: np.ndarray  # RGB 0..1
    sky_horizon: np.ndarray
    ambient: float
    sun: float  # directional light strength
    sun_dir: np.ndarray  # world unit vector towards the sun
    fog_colour: np.ndarray
    fog_distance: float  # metres: visibility falls as exp(-distance / fog_distance)
    headlights: bool  # lights on (dusk and night, or heavy weather)
    headlight_gain: float  # how much the ego's headlights light what is in front of it
    wet: bool

    def base_colour(self, role: str) -> np.ndarray:
        return np.array(_BASE[role], dtype=float)

    def emissive_colour(self, role: str) -> np.ndarray:
        table = _EMISSIVE_ON if self.headlights or role in (sh.RED_LIGHT, sh.GREEN_LIGHT) else _EMISSIVE_OFF
        return np.array(table[role], dtype=float)


def make_style(time_of_day: str, weather: str, rng: np.random.Generator) -> Style:
    if time_of_day not in TIMES_OF_DAY:
        raise ValueError(f"world.time_of_day must be one of {TIMES_OF_DAY}, got {time_of_day!r}")
    if weather not in WEATHERS:
        raise ValueError(f"world.weather must be one of {WEATHERS}, got {weather!r}")
    azimuth = rng.uniform(0, 2 * np.pi)
    elevation = {"day": rng.uniform(0.5, 1.1), "dusk": rng.uniform(0.05, 0.2), "night": -0.5}[time_of_day]
    sun_dir = np.array([np.cos(azimuth) * np.cos(elevation), np.sin(azimuth) * np.cos(elevation), np.sin(elevation)])
    if time_of_day == "day":
        top, horizon, ambient, sun = (0.35, 0.55, 0.85), (0.75, 0.85, 0.95), 0.55, 0.55
    elif time_of_day == "dusk":
        top, horizon, ambient, sun = (0.25, 0.25, 0.45), (0.95, 0.6, 0.35), 0.35, 0.35
    else:
        top, horizon, ambient, sun = (0.01, 0.01, 0.04), (0.06, 0.07, 0.12), 0.08, 0.0
    fog_distance, fog = 400.0, np.array(horizon)
    if weather == "rain":
        grey = 0.55 if time_of_day == "day" else (0.3 if time_of_day == "dusk" else 0.05)
        top, horizon = (grey * 0.8, grey * 0.82, grey * 0.88), (grey, grey, grey * 1.05)
        ambient, sun, fog_distance, fog = ambient * 0.75, sun * 0.2, 150.0, np.array(horizon)
    elif weather == "fog":
        grey = 0.75 if time_of_day == "day" else (0.45 if time_of_day == "dusk" else 0.08)
        top = horizon = (grey, grey, grey)
        ambient, sun, fog_distance, fog = ambient * 0.85, sun * 0.15, 35.0, np.array(horizon)
    return Style(time_of_day, weather, np.array(top), np.array(horizon), ambient, sun, sun_dir, fog,
                 fog_distance, headlights=time_of_day != "day" or weather != "clear",
                 headlight_gain={"day": 0.0, "dusk": 0.35, "night": 0.9}[time_of_day], wet=weather == "rain")
