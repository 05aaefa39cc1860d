"""Video folders: every codec made here with PyAV, frame-accurate picks, variable rate, rotation,
sparse video, odd fps, the index cache, sidecars and the broken-file corpus."""

from __future__ import annotations

import json
import os
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from data_fixtures import BAR, CODECS, decoded_times, frame_number, write_video

from drivesim.data import DataError, VideoFolderClips
from drivesim.data.video_index import CACHE_NAME, index_folder


def numbers(clip) -> list[int]:
    return [frame_number(f.numpy()) for f in clip.frames]


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_each_codec_gives_the_right_frames(tmp_path: Path, codec: str) -> None:
    # 12 fps source, gop of 5 so the clips need real seeks; 4 fps target -> every third frame.
    write_video(tmp_path / f"a{CODECS[codec][1]}", codec, frames=19, fps=12.0, gop=5)
    ds = VideoFolderClips(tmp_path, frames=4, fps=4.0, size=(32, 48), use_cache=False)
    assert len(ds) == 1 and ds.videos[0].codec == codec.split("-")[0]
    clip = ds[0]
    assert clip.frames.shape == (4, 3, 32, 48) and clip.frames.dtype == torch.uint8
    assert numbers(clip) == [0, 3, 6, 9]
    # Random access in the other direction still decodes exact frames.
    ds2 = VideoFolderClips(tmp_path, frames=3, fps=2.0, size=(32, 48), stride=0.5, use_cache=False)
    assert [numbers(ds2[i]) for i in reversed(range(len(ds2)))] == [[6, 12, 18], [0, 6, 12]]


def test_variable_frame_rate_takes_latest_frame_at_or_before(tmp_path: Path) -> None:
    times = [0.0, 0.04, 0.30, 0.31, 0.9, 1.0, 1.7, 2.2]
    write_video(tmp_path / "vfr.mp4", "h264", times=times)
    ds = VideoFolderClips(tmp_path, frames=6, fps=2.5, size=(32, 32), use_cache=False)  # targets 0, .4, .8, 1.2, 1.6, 2.0
    clip = ds[0]
    assert numbers(clip) == [0, 3, 3, 5, 5, 6]
    np.testing.assert_allclose(clip.source.timestamps, np.arange(6) / 2.5)


def test_sparse_video_is_valid_under_both_policies(tmp_path: Path) -> None:
    write_video(tmp_path / "sparse.mkv", "h264", times=[0.0, 5.0, 10.0])
    for policy in ("raise", "skip"):
        ds = VideoFolderClips(tmp_path, frames=4, fps=3.0, size=(16, 16), on_error=policy, use_cache=False)
        assert not ds.skipped and len(ds) == int((10.0 - 1.0) // (4 / 3)) + 1
        assert numbers(ds[0]) == [0, 0, 0, 0]
        assert numbers(ds[4]) == [1, 1, 1, 1]  # starts at 5.33 s


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_sparse_video_with_a_low_nominal_rate_is_not_mistaken_for_truncated(tmp_path: Path, suffix: str) -> None:
    # Nominal rate 0.1 fps: the last frame is shown for 10 s, so the container declares 11.1 s.
    write_video(tmp_path / f"sparse{suffix}", "h264", times=[0.0, 0.1, 0.2, 0.3, 0.4, 1.0, 1.1], fps=0.1)
    for policy in ("raise", "skip"):
        ds = VideoFolderClips(tmp_path, frames=3, fps=2.0, size=(16, 16), on_error=policy, use_cache=False)
        assert not ds.skipped and len(ds) == 1 and numbers(ds[0]) == [0, 4, 5]


@pytest.mark.parametrize("fps", [7.0, 5.3, 29.97])
def test_resampling_at_odd_fps_matches_timestamps(tmp_path: Path, fps: float) -> None:
    write_video(tmp_path / "v.mp4", "h264", frames=40, fps=25.0, gop=9)  # frames 0.04 s apart
    ds = VideoFolderClips(tmp_path, frames=5, fps=fps, size=(20, 30), use_cache=False)
    for i in (0, len(ds) - 1):
        start = ds.items[i][1]
        expect = [int(np.floor((start + k / fps) * 25.0 + 1e-6)) % 20 for k in range(5)]
        assert numbers(ds[i]) == expect


def test_rotation_metadata_is_applied(tmp_path: Path) -> None:
    write_video(tmp_path / "r.mp4", "h264", frames=8, size=(48, 96), rotation=90)
    ds = VideoFolderClips(tmp_path, frames=2, fps=4.0, size=(96, 48), use_cache=False)
    assert (ds.videos[0].width, ds.videos[0].height) == (48, 96)
    image = ds[0].frames[0].numpy()  # (3, 96, 48): the left bar turned counter-clockwise is the bottom rows
    assert image[:, -BAR // 2 :, :].mean() > 240 and image[:, :BAR, :].mean() < 200


def test_index_cache_is_reused_and_rebuilt_when_a_file_changes(tmp_path: Path) -> None:
    write_video(tmp_path / "a.mp4", "h264", frames=10)
    first = index_folder(tmp_path)
    cache = tmp_path / CACHE_NAME
    assert cache.is_file() and json.loads(cache.read_text())["files"]["a.mp4"]["pts"]
    stamp = cache.stat().st_mtime_ns
    time.sleep(0.01)
    again = index_folder(tmp_path)
    assert cache.stat().st_mtime_ns == stamp and again.videos[0].pts == first.videos[0].pts
    write_video(tmp_path / "a.mp4", "h264", frames=30)
    os.utime(tmp_path / "a.mp4", ns=(time.time_ns(), time.time_ns() + 10**9))
    rebuilt = index_folder(tmp_path)
    assert len(rebuilt.videos[0].pts) == 30 and cache.stat().st_mtime_ns != stamp


def test_sidecar_boxes_speed_and_waypoints(tmp_path: Path) -> None:
    write_video(tmp_path / "d.mp4", "h264", frames=20, fps=10.0, size=(60, 120))
    entries = [
        {"t": i / 10, "boxes": [[10 + i, 20, 40 + i, 50]], "classes": ["vehicle.car"], "ids": [7],
         "speed": 5.0 + i / 10, "x": 5.0 * i / 10, "y": 0.0, "yaw": 0.0}
        for i in range(20)
    ]
    (tmp_path / "d.mp4.json").write_text(json.dumps({"version": 1, "description": "night", "frames": entries,
                                                     "intrinsics": [[100, 0, 60], [0, 100, 30], [0, 0, 1]]}))
    ds = VideoFolderClips(tmp_path, frames=3, fps=5.0, size=(30, 60), use_cache=False)
    clip = ds[0]  # frames 0, 2, 4; scale 0.5, no crop
    np.testing.assert_allclose(clip.boxes_2d[1], [[6.0, 10.0, 21.0, 25.0]])
    assert [c.tolist() for c in clip.classes] == [[1]] * 3 and clip.instance_ids[2].tolist() == [7]
    np.testing.assert_allclose(clip.ego.speed, [5.0, 5.2, 5.4], atol=1e-5)
    np.testing.assert_allclose(clip.ego.waypoints[0, 0], [2.5, 0.0], atol=1e-4)
    np.testing.assert_allclose(clip.camera.intrinsics, [[50, 0, 30], [0, 50, 15], [0, 0, 1]])
    assert clip.labels.time_of_day == 2 and clip.labels.weather == 0


def test_video_without_sidecar_has_unknown_ego(tmp_path: Path) -> None:
    write_video(tmp_path / "a.mp4", "h264", frames=12)
    clip = VideoFolderClips(tmp_path, frames=2, fps=3.0, size=(17, 23), use_cache=False)[0]
    assert clip.frames.shape == (2, 3, 17, 23) and np.isnan(clip.ego.speed).all() and not clip.ego.waypoint_mask.any()
    assert all(len(b) == 0 for b in clip.boxes_2d)


def _broken_corpus(root: Path) -> dict[str, str]:
    """name -> expected text of its one-line error."""
    good = write_video(root / "good.mp4", "h264", frames=24)
    data = good.read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])
    write_video(root / "cut.mkv", "h264", frames=48, size=(64, 96), noise=True)
    raw = (root / "cut.mkv").read_bytes()
    (root / "cut.mkv").write_bytes(raw[: int(len(raw) * 0.6)])
    # An MP4 with its index up front (as phones and `-movflags faststart` write it), cut near the end,
    # and an AVI cut short: both still open and demux, with fewer frames than their headers list.
    write_video(root / "cut_faststart.mp4", "h264", frames=90, fps=30.0, noise=True, container_options={"movflags": "faststart"})
    raw = (root / "cut_faststart.mp4").read_bytes()
    (root / "cut_faststart.mp4").write_bytes(raw[: int(len(raw) * 0.95)])
    write_video(root / "cut.avi", "mjpeg", frames=60, fps=30.0, noise=True, time_base=Fraction(1, 30))
    raw = (root / "cut.avi").read_bytes()
    (root / "cut.avi").write_bytes(raw[: int(len(raw) * 0.6)])
    (root / "garbage.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    (root / "empty.mov").write_bytes(b"")
    (root / "folder.mp4").mkdir()
    write_video(root / "short.mp4", "h264", frames=3, fps=12.0)
    (root / "bad.mp4.json").write_text("{not json")
    write_video(root / "bad.mp4", "h264", frames=24)
    return {
        "truncated.mp4": "cannot open as a video", "cut.mkv": "truncated or corrupt: frames stop at",
        "cut_faststart.mp4": "truncated or corrupt: ", "cut.avi": "truncated or corrupt: frames stop at", "garbage.mp4": "cannot open as a video",
        "empty.mov": "empty file (0 bytes)", "folder.mp4": "is a directory", "short.mp4": "shorter than one clip",
        "bad.mp4.json": "not valid JSON",
    }


def test_broken_corpus_raises_one_line_error_per_file(tmp_path: Path) -> None:
    expected = _broken_corpus(tmp_path)
    for name, text in expected.items():
        sub = tmp_path / "one" / name.replace(".", "_")
        sub.mkdir(parents=True)
        video = name[:-5] if name.endswith(".json") else name
        os.rename(tmp_path / video, sub / video) if (tmp_path / video).exists() else None
        if name.endswith(".json"):
            os.rename(tmp_path / name, sub / name)
        with pytest.raises(DataError) as info:
            ds = VideoFolderClips(sub, frames=4, fps=3.0, size=(16, 16), use_cache=False)
            for i in range(len(ds)):
                ds[i]
        message = str(info.value)
        assert "\n" not in message and name in message and text in message, message


def test_broken_corpus_is_skipped_and_counted(tmp_path: Path) -> None:
    expected = _broken_corpus(tmp_path)
    ds = VideoFolderClips(tmp_path, frames=4, fps=3.0, size=(16, 16), on_error="skip", use_cache=False)
    clips = [ds[i] for i in range(len(ds))]
    left_out = len(ds.skipped) + sum(c is None for c in clips)
    assert left_out == len(expected)  # every broken video, each once
    assert {Path(v.path).name for v in ds.videos} >= {"good.mp4"}
    assert all(c is None or c.frames.shape == (4, 3, 16, 16) for c in clips)


def test_targets_compare_with_the_stored_presentation_timestamps(tmp_path: Path) -> None:
    # 30 fps in a 1 ms time base: frame 20 is stored at 0.667 s, after the 2/3 s target, so the
    # target takes frame 19 (what a sequential decode's timestamps say); frame 30 is at 1.000 s.
    write_video(tmp_path / "v.mkv", "h264", frames=45, fps=30.0)
    ds = VideoFolderClips(tmp_path, frames=4, fps=3.0, size=(16, 16), use_cache=False)
    assert ds.videos[0].time_base == (1, 1000)
    assert numbers(ds[0]) == [0, 10, 19, 10]  # frames 0, 10, 19, 30 (grey levels repeat every 20)


# Files as phones, dash cams and ffmpeg write them: B-frames with reordering (pts != dts) in a long
# GOP, open GOPs, an audio track first and a start offset, a coarse 1/fps time base (AVI), NTSC rates.
PHONE_LIKE = {
    "bframes_long_gop.mp4": dict(codec="h264", fps=30.0, time_base=Fraction(1, 90000),
                                 options={"bf": "3", "x264-params": "keyint=250:b-pyramid=normal"}),
    "open_gop.mkv": dict(codec="h264", fps=30.0, options={"bf": "3", "x264-params": "keyint=12:min-keyint=12:open-gop=1:scenecut=0"}),
    "audio_first_offset.mp4": dict(codec="h264", fps=25.0, time_base=Fraction(1, 12800), options={"bf": "2"}, audio_seconds=3.0, offset=1.5),
    "audio_longer.mkv": dict(codec="h264", fps=30.0, audio_seconds=4.5, offset=0.5),
    "coarse_time_base.avi": dict(codec="mjpeg", fps=30.0, time_base=Fraction(1, 30)),
    # AVI keeps decode times only: with B-frames its seeks land past the key frame and the decoder's pts are not
    # display times (frames come out in display order, though).
    "bframes.avi": dict(codec="h264", fps=30.0, time_base=Fraction(1, 30), options={"bf": "3", "g": "15"}),
    "ntsc.mov": dict(codec="h264-mov", fps=30000 / 1001, time_base=Fraction(1, 30000), options={"bf": "3"}),
    "hevc_bframes.mp4": dict(codec="hevc", fps=24.0, time_base=Fraction(1, 12288),
                             options={"x265-params": "log-level=none:bframes=4:keyint=30"}),
}


@pytest.mark.parametrize("name", sorted(PHONE_LIKE))
def test_random_access_matches_a_sequential_decode(tmp_path: Path, name: str) -> None:
    write_video(tmp_path / name, frames=60, size=(64, 96), **PHONE_LIKE[name])  # type: ignore[arg-type]  (x265 crashes below 64 px)
    stamps = np.sort(decoded_times(tmp_path / name))  # the frames come out in display order; an AVI's pts need not
    assert len(stamps) == 60
    for fps in (7.0, 3.0, 12.5):
        ds = VideoFolderClips(tmp_path, frames=3, fps=fps, size=(32, 48), stride=0.29, use_cache=False)
        assert not ds.skipped and len(ds) > 1
        for i in reversed(range(len(ds))):  # backwards: every clip needs a real seek
            clip = ds[i]
            expect = [int(np.searchsorted(stamps, t + 1e-7, side="right")) - 1 for t in clip.source.timestamps]
            assert numbers(clip) == [e % 20 for e in expect], (name, fps, i)


def test_frames_hidden_by_an_edit_list_are_not_indexed(tmp_path: Path) -> None:
    # Frames before t=0 are written, and the mp4 edit list hides them (as after a cut without re-encoding).
    write_video(tmp_path / "e.mp4", "h264", times=[-0.2 + 0.1 * i for i in range(20)])
    ds = VideoFolderClips(tmp_path, frames=3, fps=5.0, size=(16, 16), use_cache=False)
    assert ds.videos[0].pts[0] == 0
    assert numbers(ds[0]) == [2, 4, 6]


def test_nested_upper_case_and_non_ascii_names(tmp_path: Path) -> None:
    (tmp_path / "DCIM" / "100GOPRO").mkdir(parents=True)
    write_video(tmp_path / "DCIM" / "100GOPRO" / "GX010042.MP4", "h264", frames=13, fps=12.0)
    (tmp_path / "Fahrten" / "München").mkdir(parents=True)
    write_video(tmp_path / "Fahrten" / "München" / "nächtliche Fahrt 夜.mkv", "h264", frames=13, fps=12.0)
    write_video(tmp_path / "one_frame.mp4", "h264", frames=1)
    ds = VideoFolderClips(tmp_path, frames=2, fps=1.0, size=(16, 16), on_error="skip")
    assert sorted(v.path for v in ds.videos) == ["DCIM/100GOPRO/GX010042.MP4", "Fahrten/München/nächtliche Fahrt 夜.mkv"]
    assert [numbers(ds[i]) for i in range(len(ds))] == [[0, 12], [0, 12]]
    assert len(ds.skipped) == 1 and "one_frame.mp4: shorter than one clip" in ds.skipped[0]
    single = VideoFolderClips(tmp_path, frames=1, fps=1.0, size=(16, 16))  # a one-frame clip fits a one-frame video
    assert len(single) == 5 and numbers(single[0]) == [0]
    assert json.loads((tmp_path / CACHE_NAME).read_text())["files"]["Fahrten/München/nächtliche Fahrt 夜.mkv"]["pts"][0] == 0
