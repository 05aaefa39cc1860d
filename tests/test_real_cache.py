"""The real-side disk cache: what it stores comes back equal, only listed result types are rebuilt, a file
under another key or a broken file is one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from drivesim.metrics import real_cache
from drivesim.metrics.action import ActionSeries
from drivesim.metrics.temporal import TemporalSeries

KEY = {"metric": "temporal", "real": "abc", "protocol": {"fps": 12.0}, "extractor": "x", "code": 1}


@pytest.fixture(autouse=True)
def caches(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("DRIVESIM_CACHE", str(tmp_path / "user"))
    return tmp_path


def test_values_round_trip() -> None:
    rng = np.random.default_rng(0)
    value = ([TemporalSeries(rng.random(3), np.array([np.nan, 1.0, 2.0]), rng.random(3))],
             ({"recall": 0.5, "boxes": 3, "name": None}, rng.random(4), np.zeros(0)),
             [ActionSeries(np.arange(2.0), np.ones(2), np.zeros(2, np.float32))])
    assert real_cache.load("temporal", KEY) is None
    real_cache.store("temporal", KEY, value)
    back = real_cache.load("temporal", KEY)
    assert isinstance(back[0][0], TemporalSeries) and isinstance(back[2][0], ActionSeries)
    np.testing.assert_array_equal(back[0][0].warp_error, value[0][0].warp_error)
    assert back[1][0] == value[1][0] and isinstance(back[1], tuple) and back[1][2].shape == (0,)
    assert back[2][0].yaw_rate_error.dtype == np.float32
    assert real_cache.load("temporal", {**KEY, "real": "other"}) is None


def test_unknown_types_are_refused() -> None:
    with pytest.raises(TypeError, match="cannot store a object"):
        real_cache.store("temporal", KEY, [object()])


def test_a_broken_or_foreign_file_is_a_warning_and_a_miss(caches: Path, caplog) -> None:
    path = real_cache.store("temporal", KEY, [1.0])
    other = real_cache.store("layout", KEY, [2.0])
    assert path is not None and other is not None
    path.write_bytes(other.read_bytes())  # a file holding another key under this name
    assert real_cache.load("temporal", KEY) is None
    path.write_bytes(b"not a safetensors file")
    assert real_cache.load("temporal", KEY) is None
    assert sum("not a usable real-side cache file" in r.message for r in caplog.records) == 2
    assert real_cache.store("temporal", KEY, [1.0]) == path and real_cache.load("temporal", KEY) == [1.0]


def test_an_unwritable_cache_is_a_warning(caches: Path, caplog) -> None:
    (caches / "user").write_text("a file where the cache folder should be")
    assert real_cache.store("temporal", KEY, [1.0]) is None
    assert any("is not cached" in r.message for r in caplog.records)
