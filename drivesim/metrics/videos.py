"""Videos to evaluate: `drivesim generate` output folders, plain folders of videos or of frames, clips.

A `drivesim generate` folder holds `video.mp4`, `conditions.jsonl` (one JSON object per frame:
`{"frame", "time", "ego_speed", "ego_yaw_rate", "boxes": [{"id", "class", "xyxy"}]}`, boxes
normalised to [0, 1], unknown ego values null) and `run.json`; it may hold one such subfolder per
seed. Any other video file (.mp4 .avi .mkv .mov .webm .m4v) is one video (in display orientation; a truncated
file is an error, never a shorter video), and a folder of images (.png .jpg) with no video file beside them is
one video of its frames in natural name order (frame2 before frame10; fps from `run.json` or `fps.txt`, else given).
Every video is resized (shorter side, area) and centre-cropped to the protocol size, boxes with it.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np
import torch

from drivesim.data.transforms import ResizeCrop
from drivesim.data.video_decode import display_rgb
from drivesim.data.video_index import VIDEO_SUFFIXES, build_index

log = logging.getLogger(__name__)

VIDEO_EXTS = VIDEO_SUFFIXES  # the training loader's: a file one reads, the other does too
IMAGE_EXTS = (".png", ".jpg", ".jpeg")
CONDITIONS = "conditions.jsonl"
RUN_VIDEO = "video.mp4"  # the model output in a `drivesim generate` folder


@dataclass(frozen=True)
class CondBox:
    id: str
    cls: str
    xyxy: tuple[float, float, float, float]  # pixels of the evaluated (resized) frame, pixel edges


@dataclass(frozen=True)
class FrameCond:
    """What a frame was conditioned on (or, for real clips, its truth); NaN ego values are unknown."""

    time: float
    ego_speed: float = math.nan
    ego_yaw_rate: float = math.nan
    boxes: tuple[CondBox, ...] = ()


@dataclass
class EvalVideo:
    """One video at the protocol size: frames uint8 (T, 3, H, W), fps, per-frame conditions if known."""

    name: str
    frames: torch.Tensor
    fps: float
    conditions: list[FrameCond] | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        f = self.frames
        if f.dtype != torch.uint8 or f.ndim != 4 or f.shape[1] != 3:
            raise ValueError(f"{self.name}: frames must be uint8 (T, 3, H, W), got {f.dtype} {tuple(f.shape)}")
        if self.conditions is not None and len(self.conditions) != f.shape[0]:
            raise ValueError(f"{self.name}: {len(self.conditions)} condition records for {f.shape[0]} frames")


def _is_image_folder(path: Path) -> bool:
    """Images and no video file: a thumbnail beside videos is not a 1-frame video of its own."""
    if not path.is_dir():
        return False
    suffixes = {p.suffix.lower() for p in path.iterdir() if p.is_file()}
    return bool(suffixes & set(IMAGE_EXTS)) and not suffixes & set(VIDEO_EXTS)


def _natural_key(path: Path) -> list[int | str]:
    """frame2.png before frame10.png (the unpadded names `ffmpeg -i %d.png` writes)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def find_videos(root: str | Path) -> list[Path]:
    """Every video under `root`: generate folders (only their video.mp4: overlay.mp4 and contact_sheet.png
    are not the model's output), other video files, folders of images; hidden paths are skipped."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"no such file or folder of videos: {root}")

    def hidden(path: Path) -> bool:
        return any(part.startswith(".") for part in path.relative_to(root).parts)

    runs = {p.parent for p in root.rglob(RUN_VIDEO) if not hidden(p)}
    found = sorted(folder / RUN_VIDEO for folder in runs)
    candidates = [root, *sorted(root.rglob("*"))]
    for path in candidates:
        if path != root and hidden(path) or any(a in runs for a in (path, *path.parents)):
            continue
        if (path.is_file() and path.suffix.lower() in VIDEO_EXTS) or _is_image_folder(path):
            found.append(path)
    if not found:
        raise FileNotFoundError(f"{root}: no videos (.mp4 .avi .mkv .mov .webm .m4v) or image folders in it")
    return sorted(found)


def _decode(path: Path) -> tuple[list[np.ndarray], float]:
    # The training loader's index: it refuses a truncated file (every frame the container declares must be
    # there) and reads the display rotation, so `data=videos` and `real=`/`generated=` see the same frames.
    index = build_index(path, str(path))
    rotation = index.rotation
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            frames = [display_rgb(f, rotation) for f in container.decode(stream)]
    except (av.FFmpegError, OSError, IndexError) as exc:
        raise ValueError(f"{path}: not a readable video ({exc.__class__.__name__}: {exc})") from exc
    if not frames:
        raise ValueError(f"{path}: the video has no frames")
    nominal = float(rate) if rate else math.nan
    mean = (len(index.pts) - 1) / index.span if len(index.pts) > 1 and index.span > 0 else math.nan
    if math.isfinite(mean) and not (math.isfinite(nominal) and abs(mean - nominal) <= 0.01 * mean):
        # A variable-rate file's nominal rate is a container default or its fastest stretch: its frames'
        # own times give the mean rate the metrics' per-second figures need.
        log.info("%s: frames at a mean %.3f fps (the container says %g)", path, mean, nominal)
        return frames, mean
    return frames, nominal


def _read_images(folder: Path) -> list[np.ndarray]:
    images = []
    for path in sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS), key=lambda p: (_natural_key(p), p.name)):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"{path}: not a readable image")
        images.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    return images


def _fps_hint(folder: Path) -> float | None:
    run = folder / "run.json"
    if run.is_file():
        try:
            fps = json.loads(run.read_text(encoding="utf-8")).get("fps")
        except (json.JSONDecodeError, AttributeError) as exc:
            raise ValueError(f"{run}: not a JSON object ({exc})") from exc
        if fps is not None:
            return float(fps)
    hint = folder / "fps.txt"
    return float(hint.read_text().strip()) if hint.is_file() else None


def _number(record: dict, key: str, where: str) -> float:
    value = record.get(key)
    if value is None:
        return math.nan
    if not isinstance(value, int | float):
        raise ValueError(f"{where}: field {key!r} must be a number or null, got {value!r}")
    return float(value)


def read_conditions(path: Path, frames: int, transform: ResizeCrop) -> list[FrameCond]:
    """Parse conditions.jsonl for `frames` frames, boxes mapped into the evaluated frame's pixels."""
    records: dict[int, FrameCond] = {}
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{line_no}"
        try:
            record = json.loads(line)
            frame = int(record["frame"])
            listed = record.get("boxes", [])
            boxes = []
            if listed:  # one transform per frame, not per box (it was 60% of reading a drive's conditions)
                xyxy = np.array([[float(v) for v in box["xyxy"]] for box in listed], np.float64).reshape(len(listed), 4)
                out, keep = transform.boxes(xyxy * np.array([transform.src_w, transform.src_h] * 2, np.float64))
                boxes = [CondBox(str(box["id"]), str(box["class"]), tuple(float(v) for v in out[k]))  # type: ignore[arg-type]
                         for k, box in enumerate(listed) if keep[k]]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{where}: bad condition record ({exc.__class__.__name__}: {exc})") from exc
        records[frame] = FrameCond(_number(record, "time", where), _number(record, "ego_speed", where),
                                   _number(record, "ego_yaw_rate", where), tuple(boxes))
    missing = [k for k in range(frames) if k not in records]
    if missing:
        raise ValueError(f"{path}: no record for frame(s) {missing[:5]} of {frames}")
    return [records[k] for k in range(frames)]


def load_video(path: str | Path, size: tuple[int, int], fps: float | None = None) -> EvalVideo:
    """Read one video (file or image folder) at `size` = (H, W), with conditions.jsonl if beside it."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    if path.is_dir():
        images, rate = _read_images(path), math.nan
    else:
        images, rate = _decode(path)
    hint = _fps_hint(folder)
    rate = hint if hint is not None else (rate if math.isfinite(rate) else (fps or math.nan))
    if not math.isfinite(rate) or rate <= 0:
        raise ValueError(f"{path}: unknown frame rate (write it in {folder / 'fps.txt'} or run.json)")
    h, w = images[0].shape[:2]
    transform = ResizeCrop(h, w, int(size[0]), int(size[1]))
    frames = np.stack([transform.image(im) for im in images]).transpose(0, 3, 1, 2)
    cond_path = folder / CONDITIONS
    with_conditions = cond_path.is_file() and (path.is_dir() or path.name == RUN_VIDEO)
    conditions = read_conditions(cond_path, len(images), transform) if with_conditions else None
    return EvalVideo(path.parent.name if path.name == RUN_VIDEO else path.stem, torch.from_numpy(np.ascontiguousarray(frames)),
                     rate, conditions, {"path": str(path), "source_size": [h, w]})


KEEP_BYTES = 2 << 30  # decoded frames a VideoSeq keeps between passes (a 60-s 128x256 drive is 70 MB)


class VideoSeq:
    """Videos loaded on demand, so memory stays bounded whatever their number.

    `loaders[k]()` gives video k (or None for a clip the dataset skipped, left out). Each metric group
    is a pass over the videos, and decoding a 60-s drive and parsing its conditions costs seconds: the
    first pass keeps what fits in `keep_bytes` of frames (the rest is loaded again on every pass; 0 keeps
    nothing). The metrics only read a video's tensors, never write them, so a kept video is shared.
    `frames_seen` counts what was read.
    """

    def __init__(self, loaders: list[Callable[[], EvalVideo | None]], keep_bytes: int = KEEP_BYTES) -> None:
        self.loaders = loaders
        self.keep_bytes = int(keep_bytes)
        self.frames_seen: dict[int, int] = {}
        self.rates: set[float] = set()  # the frame rates of the videos read
        self.loads = 0  # loader calls so far
        self._kept: dict[int, EvalVideo | None] = {}
        self._kept_bytes = 0

    def __len__(self) -> int:
        return len(self.loaders)

    def __iter__(self) -> Iterator[EvalVideo]:
        for k, load in enumerate(self.loaders):
            video = self._kept[k] if k in self._kept else self._load(k, load)
            if video is not None:
                self.frames_seen[k] = int(video.frames.shape[0])
                self.rates.add(round(float(video.fps), 4))
                yield video

    def _load(self, k: int, load: Callable[[], EvalVideo | None]) -> EvalVideo | None:
        video = load()
        self.loads += 1
        size = 0 if video is None else video.frames.numel() * video.frames.element_size()
        if self._kept_bytes + size <= self.keep_bytes:
            self._kept[k] = video
            self._kept_bytes += size
        return video

    @staticmethod
    def of(videos: list[EvalVideo]) -> VideoSeq:
        return VideoSeq([lambda v=v: v for v in videos])  # type: ignore[misc]
