"""Per-file index of a video folder: frame presentation times and key frames, cached beside the data.

Container frame counts and nominal rates are not trusted: the index lists every packet's
presentation timestamp (demuxing only, no decoding), which is what random access and fps
resampling need. The cache `<root>/.drivesim_index.json` is keyed by each file's size and
mtime and rebuilt for files that changed; it is written to a temp file and renamed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from fractions import Fraction
from functools import cached_property
from pathlib import Path

import av
import numpy as np

from drivesim.atomic import atomic_write_text
from drivesim.data.errors import DataError
from drivesim.progress import progress

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
CACHE_NAME = ".drivesim_index.json"
CACHE_VERSION = 4  # 4: decode_order


@dataclass
class VideoIndex:
    """One video: pts (sorted, in time_base units), key-frame pts, display size after rotation."""

    path: str
    size: int
    mtime_ns: int
    codec: str
    time_base: tuple[int, int]
    pts: list[int]
    keyframes: list[int]
    width: int
    height: int
    rotation: int
    # The container's timestamps are decode times (AVI with B-frames): frames are read in decode-output order from
    # the start, the k-th one shown at pts[k], never picked by their own timestamps.
    decode_order: bool = False

    @cached_property
    def seconds(self) -> np.ndarray:
        """Frame times in seconds from the first frame (computed once: every clip looks them up)."""
        num, den = self.time_base
        pts = np.asarray(self.pts, np.float64)
        return (pts - pts[0]) * num / den

    @property
    def span(self) -> float:
        return float(self.seconds[-1]) if self.pts else 0.0


def find_videos(root: Path) -> list[Path]:
    """Every entry under root named like a video (directories too, so they can be reported)."""
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and not p.name.startswith("."))


def _stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def build_index(path: Path, rel: str) -> VideoIndex:
    """Demux `path` into a VideoIndex; raise DataError naming the file for anything unusable."""
    if path.is_dir():
        raise DataError(path, "is a directory, not a video file")
    size, mtime_ns = _stat(path)
    if size == 0:
        raise DataError(path, "empty file (0 bytes)")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise DataError(path, f"cannot open as a video ({exc.__class__.__name__}: {exc})") from exc
    with container:
        if not container.streams.video:
            raise DataError(path, "has no video stream")
        stream = container.streams.video[0]
        if stream.codec_context.width <= 0 or stream.codec_context.height <= 0:
            raise DataError(path, f"zero-size frames ({stream.codec_context.width}x{stream.codec_context.height})")
        time_base = stream.time_base or Fraction(1, 1)
        pts: list[int] = []
        keyframes: list[int] = []
        packets = 0
        shown_until = -(2**62)  # end of the last frame's display time, from packet durations
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                packets += 1
                shown_until = max(shown_until, int(packet.pts if packet.pts is not None else packet.dts or 0) + int(packet.duration or 0))
                stamp = packet.pts if packet.pts is not None else packet.dts
                if stamp is None:
                    raise DataError(path, f"packet {len(pts)} has no timestamp")
                if packet.is_keyframe:
                    keyframes.append(int(stamp))  # a seek point even when not shown
                if not packet.is_discard:  # edit lists hide some packets: the decoder drops them
                    pts.append(int(stamp))
        except av.FFmpegError as exc:
            raise DataError(path, f"corrupt or truncated: demuxing failed after {len(pts)} frames ({exc})") from exc
        if not pts:
            raise DataError(path, "has no video frames")
        pts = sorted(set(pts))
        if stream.frames and "mp4" in container.format.name:  # an MP4/MOV sample table lists every frame
            if packets < stream.frames:
                raise DataError(path, f"truncated or corrupt: {packets} of the {stream.frames} frames the container lists are present")
        else:
            _check_complete(path, container, stream, pts, max(pts[-1], shown_until))
        rotation = _probe_first_frame(container, stream, path)
        decode_order = "avi" in container.format.name and bool(stream.codec_context.has_b_frames)
    if not keyframes:
        keyframes = [pts[0]]
    width, height = stream.codec_context.width, stream.codec_context.height
    if rotation % 180:
        width, height = height, width
    return VideoIndex(
        path=rel, size=size, mtime_ns=mtime_ns, codec=stream.codec_context.name,
        time_base=(time_base.numerator, time_base.denominator), pts=pts, keyframes=sorted(set(keyframes)),
        width=width, height=height, rotation=rotation, decode_order=decode_order,
    )


def _declared_end(container: av.container.InputContainer, stream: av.VideoStream) -> float | None:
    """When the container says the video stream ends (s, on the stream's clock), or None.

    Only the video stream's own duration counts: a container's duration also spans its audio and
    subtitle tracks, which commonly run longer than the video (so it is used only for video-only
    files). Matroska keeps the stream's end time in a DURATION tag; AVI its length in ticks.
    """
    tb = float(stream.time_base or 0)
    if "avi" in container.format.name and stream.frames and tb:  # the header's length, in time-base ticks
        return ((stream.start_time or 0) + stream.frames) * tb
    if stream.duration and tb:
        return ((stream.start_time or 0) + stream.duration) * tb
    tag = stream.metadata.get("DURATION") or stream.metadata.get("duration")
    if tag:
        try:
            h, m, sec = str(tag).split(":")
            return int(h) * 3600 + int(m) * 60 + float(sec)
        except ValueError:
            return None
    if container.duration and len(container.streams) == 1:
        return ((container.start_time or 0) + container.duration) / 1e6
    return None


def _check_complete(path: Path, container: av.container.InputContainer, stream: av.VideoStream, pts: list[int],
                    shown_until: int) -> None:
    """A file whose frames stop well before the duration its container declares was cut short
    (or corrupted mid-way): the demuxer silently stops at the damage. `shown_until` (the last
    frame's pts plus its packet duration) allows for sparse video, whose last frame may be shown
    for long; the tolerance for containers that do not store that duration."""
    tb = float(stream.time_base or 0)
    start = pts[0] * tb
    end = shown_until * tb
    declared = _declared_end(container, stream)
    if declared is None or len(pts) < 2:
        return
    typical = float(np.median(np.diff(pts))) * tb
    if declared - end > max(0.5, 3.0 * typical):
        raise DataError(path, f"truncated or corrupt: frames stop at {pts[-1] * tb - start:.2f}s of the {declared - start:.2f}s the container declares")


def _probe_first_frame(container: av.container.InputContainer, stream: av.VideoStream, path: Path) -> int:
    """Decode the first frame: proves the stream decodes and gives the display rotation."""
    try:
        container.seek(0, stream=stream, backward=True)
        for frame in container.decode(stream):
            if frame.width <= 0 or frame.height <= 0:
                raise DataError(path, f"zero-size frames ({frame.width}x{frame.height})")
            return int(round(frame.rotation / 90.0)) * 90 % 360
    except av.FFmpegError as exc:
        raise DataError(path, f"corrupt: the first frame does not decode ({exc})") from exc
    raise DataError(path, "corrupt: no frame decodes")


@dataclass
class FolderIndex:
    """Every video under a root: usable ones indexed, unusable ones with their one-line error."""

    videos: list[VideoIndex]
    errors: dict[str, DataError]


def _load_cache(cache: Path) -> dict[str, dict]:
    try:
        data = json.loads(cache.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("%s: unreadable index cache, rebuilding (%s)", cache, exc)
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return {}
    return dict(data.get("files", {}))


def _write_cache(cache: Path, files: dict[str, dict]) -> None:
    payload = json.dumps({"version": CACHE_VERSION, "files": files})
    try:
        atomic_write_text(cache, payload)
    except OSError as exc:
        log.warning("%s: cannot write the index cache (%s); keeping it in memory", cache, exc)


def index_folder(root: Path, use_cache: bool = True) -> FolderIndex:
    """Index every video under root, reusing cached entries whose file size and mtime are unchanged."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "video folder does not exist or is not a directory")
    cache = root / CACHE_NAME
    cached = _load_cache(cache) if use_cache else {}
    files: dict[str, dict] = {}
    videos: list[VideoIndex] = []
    errors: dict[str, DataError] = {}
    changed = False
    for path in progress(find_videos(root), "indexing videos"):
        rel = path.relative_to(root).as_posix()
        size, mtime_ns = (-1, -1) if path.is_dir() else _stat(path)
        entry = cached.get(rel)
        if entry is None or entry.get("size") != size or entry.get("mtime_ns") != mtime_ns:
            changed = True
            try:
                entry = asdict(build_index(path, rel))
            except DataError as exc:
                entry = {"size": size, "mtime_ns": mtime_ns, "error": exc.problem}
        files[rel] = entry
        if "error" in entry:
            errors[rel] = DataError(path, entry["error"])
        else:
            entry = dict(entry, time_base=tuple(entry["time_base"]))
            videos.append(VideoIndex(**entry))
    if use_cache and (changed or set(files) != set(cached)):
        _write_cache(cache, files)
    return FolderIndex(videos=videos, errors=errors)
