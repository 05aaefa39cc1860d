"""Deterministic JSON: sorted keys, rounded floats, no timestamps; same data -> same bytes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from drivesim.atomic import atomic_write_text


def clean(obj: Any, digits: int = 6) -> Any:
    """Numpy scalars/arrays -> plain Python, floats rounded (and -0.0 -> 0.0) for stable bytes."""
    if isinstance(obj, dict):
        return {str(k): clean(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v, digits) for v in obj]
    if isinstance(obj, np.ndarray):
        return clean(obj.tolist(), digits)
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = round(float(obj), digits)
        return 0.0 if value == 0 else value
    return obj


def dump(path: Path, obj: Any, digits: int = 6, compact: bool = False) -> None:
    """Write `obj` as JSON (temp file, then rename). compact: `obj` is already plain and rounded."""
    if compact:
        text = json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
    else:
        text = json.dumps(clean(obj, digits), sort_keys=True, indent=1, allow_nan=False)
    atomic_write_text(path, text + "\n")
