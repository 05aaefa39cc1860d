"""Reading what is evaluated: generate folders (only video.mp4 counts), plain videos, image folders,
conditions.jsonl parsing and its one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from drivesim.metrics.baselines import write_mp4
from drivesim.metrics.videos import EvalVideo, VideoSeq, find_videos, load_video


def frames(t: int = 4, h: int = 64, w: int = 128) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (t, 3, h, w), dtype=torch.uint8, generator=g)


def conditions(t: int = 4) -> str:
    rows = [{"frame": k, "time": k / 12, "ego_speed": 5.0, "ego_yaw_rate": None,
             "boxes": [{"id": "a", "class": "car", "xyxy": [0.25, 0.5, 0.5, 0.75]}]} for k in range(t)]
    return "\n".join(json.dumps(r) for r in rows) + "\n"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    run = tmp_path / "gen" / "seed_1"
    write_mp4(run / "video.mp4", frames(), 12.0)
    shutil.copy(run / "video.mp4", run / "overlay.mp4")
    cv2.imwrite(str(run / "contact_sheet.png"), np.zeros((8, 8, 3), np.uint8))
    (run / "conditions.jsonl").write_text(conditions())
    (run / "run.json").write_text(json.dumps({"fps": 12.0, "seed": 1}))
    (run / ".rollout").mkdir()
    write_mp4(run / ".rollout" / "stale.mp4", frames(), 12.0)
    write_mp4(tmp_path / "gen" / "plain.mp4", frames(), 10.0)
    images = tmp_path / "gen" / "frames"
    images.mkdir()
    for k in range(3):
        cv2.imwrite(str(images / f"{k:04d}.png"), np.full((64, 128, 3), 40 * k, np.uint8))
    (images / "fps.txt").write_text("6\n")
    return tmp_path / "gen"


def test_only_the_model_output_of_a_generate_folder_counts(tree: Path) -> None:
    assert [p.relative_to(tree).as_posix() for p in find_videos(tree)] == ["frames", "plain.mp4", "seed_1/video.mp4"]


def test_videos_load_at_the_protocol_size_with_conditions(tree: Path) -> None:
    run = load_video(tree / "seed_1" / "video.mp4", (32, 64))
    assert run.frames.shape == (4, 3, 32, 64) and run.fps == 12.0 and run.name == "seed_1"
    box = run.conditions[0].boxes[0]
    assert box.xyxy == pytest.approx((16.0, 16.0, 32.0, 24.0))
    assert run.conditions[0].ego_speed == 5.0 and np.isnan(run.conditions[0].ego_yaw_rate)
    plain = load_video(tree / "plain.mp4", (64, 128))
    assert plain.conditions is None and plain.fps == pytest.approx(10.0)
    images = load_video(tree / "frames", (64, 128))
    assert images.frames.shape[0] == 3 and images.fps == 6.0 and int(images.frames[2].float().mean()) == 80


def test_bad_condition_records_name_the_file_and_line(tree: Path) -> None:
    path = tree / "seed_1" / "conditions.jsonl"
    lines = path.read_text().splitlines()
    lines[2] = '{"frame": 2, "time": 0.1, "ego_speed": "fast", "boxes": []}'
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"conditions.jsonl:3.*ego_speed"):
        load_video(tree / "seed_1" / "video.mp4", (32, 64))
    path.write_text("\n".join(lines[:2]) + "\n")
    with pytest.raises(ValueError, match=r"no record for frame"):
        load_video(tree / "seed_1" / "video.mp4", (32, 64))


def test_missing_folders_and_unknown_frame_rates_are_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope"):
        find_videos(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no videos"):
        find_videos(tmp_path / "empty")
    cv2.imwrite(str(tmp_path / "empty" / "0.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="unknown frame rate"):
        load_video(tmp_path / "empty", (8, 8))


def test_evaluate_reads_videos_like_the_training_loader(tmp_path: Path) -> None:
    """Display rotation applied, a truncated file refused (never a shorter video), .m4v found."""
    from data_fixtures import BAR, write_video

    write_video(tmp_path / "r.mp4", "h264", frames=8, size=(48, 96), rotation=90)
    video = load_video(tmp_path / "r.mp4", (96, 48))
    image = video.frames[0].numpy()  # the white left bar turned counter-clockwise: the bottom rows
    assert image[:, -BAR // 2:, :].mean() > 240 and image[:, :BAR, :].mean() < 200
    write_video(tmp_path / "cut.mkv", "h264", frames=48, size=(64, 96), noise=True)
    raw = (tmp_path / "cut.mkv").read_bytes()
    (tmp_path / "cut.mkv").write_bytes(raw[: int(len(raw) * 0.6)])
    with pytest.raises(ValueError, match=r"cut\.mkv: truncated or corrupt") as info:
        load_video(tmp_path / "cut.mkv", (64, 96))
    assert len(str(info.value).splitlines()) == 1
    shutil.copy(tmp_path / "r.mp4", tmp_path / "phone.m4v")
    assert tmp_path / "phone.m4v" in find_videos(tmp_path)


def test_image_folders_read_in_natural_order_and_thumbnails_are_not_videos(tmp_path: Path) -> None:
    images = tmp_path / "frames"
    images.mkdir()
    for k in range(1, 13):  # 1.png .. 12.png, unpadded as `ffmpeg -i %d.png` writes them
        cv2.imwrite(str(images / f"{k}.png"), np.full((64, 128, 3), 20 * k, np.uint8))
    video = load_video(images, (64, 128), fps=12.0)
    assert [int(f.float().mean().round()) for f in video.frames] == [20 * k for k in range(1, 13)]
    drives = tmp_path / "drives"
    write_mp4(drives / "drive.mp4", frames(), 12.0)
    cv2.imwrite(str(drives / "thumbnail.jpg"), np.zeros((8, 8, 3), np.uint8))
    assert find_videos(drives) == [drives / "drive.mp4"]


def test_a_variable_rate_video_reports_its_mean_rate(tmp_path: Path) -> None:
    from data_fixtures import write_video

    times = [0.0, 0.02, 0.04, 0.1, 0.2, 0.3, 0.32, 0.34, 0.5, 0.7]  # bursts and gaps, nominal 50 fps
    write_video(tmp_path / "vfr.mkv", "h264", times=times, fps=50.0)
    video = load_video(tmp_path / "vfr.mkv", (64, 96))
    assert video.frames.shape[0] == 10 and video.fps == pytest.approx(9 / 0.7, rel=1e-3)
    write_video(tmp_path / "cfr.mp4", "h264", frames=12, fps=12.0)
    assert load_video(tmp_path / "cfr.mp4", (64, 96)).fps == pytest.approx(12.0, rel=1e-3)


def _counting_seq(n: int, t: int, keep_bytes: int, skip: int | None = None) -> tuple[VideoSeq, list[int]]:
    calls: list[int] = []

    def loader(k: int) -> EvalVideo | None:
        calls.append(k)
        if k == skip:
            return None
        return EvalVideo(f"v{k}", torch.full((t, 3, 8, 16), k, dtype=torch.uint8), 12.0)

    return VideoSeq([lambda k=k: loader(k) for k in range(n)], keep_bytes=keep_bytes), calls


def test_a_second_pass_reads_kept_videos_without_loading_them_again() -> None:
    seq, calls = _counting_seq(3, 5, keep_bytes=1 << 20, skip=1)
    first = [v.name for v in seq]
    second = [v.name for v in seq]
    assert first == second == ["v0", "v2"]
    assert calls == [0, 1, 2] and seq.loads == 3  # the skipped clip is remembered too
    assert seq.frames_seen == {0: 5, 2: 5}


def test_videos_past_the_budget_are_loaded_on_every_pass() -> None:
    one = 5 * 3 * 8 * 16  # bytes of one video's frames
    seq, calls = _counting_seq(3, 5, keep_bytes=2 * one)
    for _ in range(3):
        assert [int(v.frames[0, 0, 0, 0]) for v in seq] == [0, 1, 2]
    assert calls == [0, 1, 2, 2, 2]
    seq, calls = _counting_seq(2, 5, keep_bytes=0)
    list(seq), list(seq)
    assert calls == [0, 1, 0, 1]
