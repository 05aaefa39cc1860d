"""Which keys differ between two nested configs: how a rerun into the same `out=` is told apart from
a resumption (training and generation both refuse a different config unless resume=false)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """{"a.b": value} for every leaf of nested mappings."""
    if isinstance(data, Mapping):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: data}


def differing_keys(a: Mapping[str, Any], b: Mapping[str, Any], ignore: tuple[str, ...] = ()) -> list[str]:
    """Dotted keys whose values differ (a key present on one side only counts), less `ignore`."""
    fa, fb = flatten(a), flatten(b)
    return sorted(k for k in set(fa) | set(fb)
                  if fa.get(k, "<absent>") != fb.get(k, "<absent>") and k not in ignore)
