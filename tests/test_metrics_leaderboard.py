"""The leaderboard: published entries load, drivesim results append, protocols never share a ranking."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drivesim.metrics.leaderboard import (
    append_entry,
    entry_from_metrics,
    load_entries,
    markdown,
    protocol_key,
)

PUBLISHED = Path(__file__).resolve().parents[1] / "benchmarks" / "leaderboard" / "published.yaml"


def metrics_json(path: Path, fid: float, sha: str, name: str = "synth-bench-v1") -> Path:
    record = {"name": name, "clip_frames": 16, "size": [128, 256], "dataset": "synthetic", "created": "now",
              "extractors": {"fid": {"extractor": {"sha256": sha}}}}
    path.write_text(json.dumps({"protocol": record, "metrics": {"fid": {"value": fid, "n": 100}}}))
    return path


def test_published_entries_carry_protocol_resolution_and_source() -> None:
    entries = load_entries(PUBLISHED)
    assert len(entries) >= 10
    for e in entries:
        assert e["protocol"] and "resolution" in e and e["source"]["arxiv"] and "table" in e["source"]


def test_results_under_different_protocols_are_never_ranked_together(tmp_path: Path) -> None:
    ours = tmp_path / "drivesim.yaml"
    append_entry(ours, entry_from_metrics(metrics_json(tmp_path / "a.json", 30.0, "a" * 64), "model-a"))
    append_entry(ours, entry_from_metrics(metrics_json(tmp_path / "b.json", 20.0, "a" * 64), "model-b"))
    append_entry(ours, entry_from_metrics(metrics_json(tmp_path / "c.json", 10.0, "c" * 64), "model-c"))
    append_entry(ours, entry_from_metrics(metrics_json(tmp_path / "b2.json", 25.0, "a" * 64), "model-b"))  # replaces
    entries = load_entries(ours)
    assert [e["model"] for e in entries] == ["model-a", "model-c", "model-b"]
    assert entries[0]["protocol"] == entries[2]["protocol"] != entries[1]["protocol"]
    text = markdown([], entries)
    same = text.split(f"## `{entries[0]['protocol']}`")[1].split("## ")[0]
    assert same.index("model-b") < same.index("model-a") and "model-c" not in same  # ranked within one protocol
    assert "| 1 | model-b" in same


def test_protocol_key_and_bad_files(tmp_path: Path) -> None:
    assert protocol_key({"name": "x", "clip_frames": 8, "size": [64, 128]}) == "drivesim:x 8f 64x128"
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="not a drivesim metrics.json"):
        entry_from_metrics(tmp_path / "bad.json", "m")
    (tmp_path / "bad.yaml").write_text("entries: 3\n")
    with pytest.raises(ValueError, match="entries"):
        load_entries(tmp_path / "bad.yaml")
