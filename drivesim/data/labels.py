"""Scene labels from free-text descriptions and object classes from nuScenes category names.

Descriptions such as "Night, rain, parking lot, many peds" are matched word by word against small
vocabularies; a description with no known word gives UNKNOWN (0) for that label, never an error,
because real descriptions are free text.
"""

from __future__ import annotations

import re

from nuscenes.eval.detection.utils import category_to_detection_name

from drivesim.data.clip import UNKNOWN, Labels
from drivesim.vocab import CLASSES, LABEL_VOCAB

VOCAB = LABEL_VOCAB

# Phrase -> label value. Phrases are matched on word boundaries of the lower-cased description.
_PHRASES: dict[str, dict[str, str]] = {
    "time_of_day": {
        "night": "night", "nighttime": "night", "dark": "night",
        "dusk": "dusk", "dawn": "dusk", "twilight": "dusk", "sunset": "dusk", "sunrise": "dusk",
        "day": "day", "daytime": "day", "daylight": "day", "sunny": "day",
    },
    "weather": {
        "rain": "rain", "rainy": "rain", "raining": "rain", "wet": "rain", "drizzle": "rain",
        "fog": "fog", "foggy": "fog", "mist": "fog", "misty": "fog", "haze": "fog",
        "clear": "clear", "sunny": "clear", "dry": "clear",
    },
    "crowdedness": {
        "crowded": "crowded", "busy": "crowded", "heavy traffic": "crowded", "many peds": "crowded",
        "lots of peds": "crowded", "many cars": "crowded", "dense traffic": "crowded", "congestion": "crowded",
        "empty": "sparse", "quiet": "sparse", "light traffic": "sparse", "no traffic": "sparse",
        "sparse": "sparse", "few cars": "sparse",
        "moderate": "moderate", "moderate traffic": "moderate", "some traffic": "moderate",
    },
}

_CLASS_INDEX = {name: i for i, name in enumerate(CLASSES)}


def _find(text: str, phrases: dict[str, str]) -> str | None:
    """The value of the earliest phrase in `text` (first mention wins, e.g. "night, not day")."""
    best: tuple[int, str] | None = None
    for phrase, value in phrases.items():
        match = re.search(rf"\b{re.escape(phrase)}\b", text)
        if match and (best is None or match.start() < best[0]):
            best = (match.start(), value)
    return None if best is None else best[1]


def parse_description(description: str | None) -> Labels:
    """Labels named in a scene description; unmatched labels stay UNKNOWN."""
    text = " ".join(re.split(r"[^a-z]+", (description or "").lower()))
    values: dict[str, int] = {}
    for label, phrases in _PHRASES.items():
        found = _find(text, phrases)
        values[label] = VOCAB[label].index(found) if found else UNKNOWN
    return Labels(**values)


def class_index(category_name: str) -> int:
    """Index in CLASSES of a nuScenes category ("vehicle.car") or a plain class name ("car")."""
    if category_name in _CLASS_INDEX:
        return _CLASS_INDEX[category_name]
    detection = category_to_detection_name(category_name)
    if detection is None:
        # Categories outside the detection mapping (vehicle.emergency.police, ...) by their family.
        head = category_name.split(".")
        detection = head[1] if len(head) > 1 and head[1] in _CLASS_INDEX else None
    return _CLASS_INDEX.get(detection or "", 0)
