"""The prepare/check CLI: reports problems one line each naming the file, builds the video index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from data_fixtures import write_nuscenes, write_video

from drivesim.data.prepare import main
from drivesim.data.video_index import CACHE_NAME


def test_nuscenes_check_passes_then_reports_problems(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = write_nuscenes(tmp_path, "v1.0-fixture", scenes=2)
    assert main(["nuscenes", "--root", str(root), "--version", "v1.0-fixture", "--decode"]) == 0
    assert "OK: no problems found" in capsys.readouterr().out
    (root / "samples" / "CAM_FRONT" / "s1_0012.jpg").unlink()  # a key frame's image
    (root / "sweeps" / "CAM_FRONT" / "s1_0005.jpg").unlink()  # a sweep's: left out, noted, not a problem
    (root / "samples" / "CAM_FRONT" / "s0_0006.jpg").write_bytes(b"junk")
    rows = json.loads((root / "v1.0-fixture" / "sample_data.json").read_text())
    for r in rows:
        if r["token"] == "sd-0-7":  # a sweep after key frame 6 pointing back at it
            r["sample_token"] = "sample-0-6"
    (root / "v1.0-fixture" / "sample_data.json").write_text(json.dumps(rows))
    assert main(["nuscenes", "--root", str(root), "--version", "v1.0-fixture", "--decode"]) == 1
    out = capsys.readouterr().out
    assert "s1_0012.jpg: image file is missing" in out and "s0_0006.jpg: image does not decode" in out
    assert "1 sweep image(s) are missing and left out" in out and "s1_0005" not in out
    assert "sweep sd-0-7 points at an earlier key frame" in out and "3 problem(s) found" in out


def test_videos_check_builds_the_index(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_video(tmp_path / "a.mp4", "h264", frames=24)
    write_video(tmp_path / "b.webm", "vp9", frames=24, rotation=270)
    assert main(["videos", "--root", str(tmp_path), "--decode"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / CACHE_NAME).is_file() and "rotated 270 deg" in out
    (tmp_path / "c.mkv").write_bytes(b"\x1a\x45\xdf\xa3" + b"\0" * 50)
    assert main(["videos", "--root", str(tmp_path)]) == 1
    assert "c.mkv: cannot open as a video" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["videos"])
    assert info.value.code == 2


def test_a_sweep_after_the_scenes_last_key_frame_is_not_a_problem(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = write_nuscenes(tmp_path, "v1.0-fixture", scenes=1)
    rows = json.loads((root / "v1.0-fixture" / "sample_data.json").read_text())
    last = next(r for r in rows if r["token"] == "sd-0-36")  # the last key frame, as a sweep 40 ms after it
    last["is_key_frame"], last["timestamp"] = False, last["timestamp"] + 40_000
    (root / "v1.0-fixture" / "sample_data.json").write_text(json.dumps(rows))
    assert main(["nuscenes", "--root", str(root), "--version", "v1.0-fixture"]) == 0
    assert "OK: no problems found" in capsys.readouterr().out
