"""Real-side results on disk: computed once per (metric, real data identity, protocol, extractor hash).

The real side of a metric is deterministic given those four, and on 2 cores it costs as much as the
generated side (the demo: about 70 s of its metrics). It lives in the user's cache (`$DRIVESIM_CACHE`);
nothing is shipped (a cache is never committed), so a fresh machine computes it on its first run.

Values are stored as safetensors arrays plus a JSON structure naming only the result types listed in
`_TYPES`: nothing but arrays, numbers, strings, lists and dicts is ever rebuilt from a file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from drivesim.atomic import atomic_path
from drivesim.metrics.extractors import cache_dir

log = logging.getLogger(__name__)


def key_digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]


def find_cached(relative: str) -> Path | None:
    """`relative` under the user's cache, or None."""
    path = cache_dir() / relative
    return path if path.is_file() else None


def _types() -> dict[str, type]:
    from drivesim.metrics.action import ActionSeries
    from drivesim.metrics.temporal import TemporalSeries

    return {"TemporalSeries": TemporalSeries, "ActionSeries": ActionSeries}


def _encode(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(value, np.ndarray):
        name = f"a{len(arrays)}"
        arrays[name] = np.ascontiguousarray(value)
        return {"array": name}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        kind = type(value).__name__
        if kind not in _types():
            raise TypeError(f"real-side cache: cannot store a {kind}")
        return {"dataclass": kind, "fields": {f.name: _encode(getattr(value, f.name), arrays)
                                              for f in dataclasses.fields(value)}}
    if isinstance(value, (list, tuple)):
        return {"list" if isinstance(value, list) else "tuple": [_encode(v, arrays) for v in value]}
    if isinstance(value, dict):
        return {"dict": {str(k): _encode(v, arrays) for k, v in value.items()}}
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"value": value}
    raise TypeError(f"real-side cache: cannot store a {type(value).__name__}")


def _decode(node: Any, arrays: dict[str, np.ndarray]) -> Any:
    if "array" in node:
        return arrays[node["array"]]
    if "dataclass" in node:
        cls = _types()[node["dataclass"]]
        return cls(**{k: _decode(v, arrays) for k, v in node["fields"].items()})
    if "list" in node:
        return [_decode(v, arrays) for v in node["list"]]
    if "tuple" in node:
        return tuple(_decode(v, arrays) for v in node["tuple"])
    if "dict" in node:
        return {k: _decode(v, arrays) for k, v in node["dict"].items()}
    return node["value"]


def relative_path(name: str, key: dict) -> str:
    return f"real/{name}-{key_digest(key)}.safetensors"


def load(name: str, key: dict) -> Any | None:
    """The stored real side of `name` under `key`, or None when neither cache holds it. A file that does not
    read back, or holds another key, is a warning and a miss (the real side is computed again and the user's
    copy rewritten): a broken cache entry never stops an evaluation."""
    from safetensors import SafetensorError, safe_open
    from safetensors.numpy import load_file

    path = find_cached(relative_path(name, key))
    if path is None:
        return None
    try:
        arrays = load_file(str(path))
        with safe_open(str(path), framework="np") as fh:
            meta = fh.metadata() or {}
        if not key_matches(meta, name, key):
            raise ValueError("its key differs from the one asked (a digest collision or a hand-edited file)")
        value = _decode(json.loads(meta["structure"]), arrays)
    except (SafetensorError, OSError, KeyError, ValueError, TypeError) as exc:
        log.warning("%s: not a usable real-side cache file (%s): computing the real side again", path, exc)
        return None
    log.info("%s: real side from the cache %s", name, path)
    return value


def key_matches(meta: dict[str, str], name: str, key: dict) -> bool:
    """Whether a cache file's metadata names `name` and holds exactly `key`."""
    stored = meta.get("name", meta.get("metric"))
    return stored == name and json.loads(meta.get("key", "null")) == json.loads(_key_json(key))


def _key_json(key: dict) -> str:
    return json.dumps(key, sort_keys=True, default=str)


def store(name: str, key: dict, value: Any) -> Path | None:
    """Write `value` into the user's cache (atomically); a cache folder that cannot be written is a warning."""
    from safetensors.numpy import save_file

    arrays: dict[str, np.ndarray] = {}
    structure = _encode(value, arrays)
    path = cache_dir() / relative_path(name, key)
    meta = {"name": name, "structure": json.dumps(structure), "key": _key_json(key)}
    try:
        with atomic_path(path) as tmp:
            save_file(arrays, str(tmp), metadata=meta)
    except OSError as exc:
        log.warning("%s: the real side of %s is not cached (%s)", path, name, exc)
        return None
    return path
