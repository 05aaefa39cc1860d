"""Deterministic nuScenes-style tokens: 32 hex characters hashed from the seed and a record's name.

Hashing (not uuid4) keeps the same seed giving a byte-identical dataset.
"""

from __future__ import annotations

import hashlib


def make_token(seed: int, *parts: object) -> str:
    """A 32-hex token unique to (seed, parts); `parts` name the record, e.g. ("sample", scene, 3)."""
    text = "/".join(str(p) for p in (seed, *parts))
    return hashlib.md5(text.encode("utf-8")).hexdigest()
