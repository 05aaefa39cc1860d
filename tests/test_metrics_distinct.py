"""Identical frames are scored once (drivesim.metrics.distinct): same outputs, fewer network passes."""

from __future__ import annotations

import pytest
import torch
from metrics_fixtures import TinyImageNet, save_scripted

from drivesim.metrics import FID
from drivesim.metrics.distinct import distinct_frames, per_distinct_frame


def frames(n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 8, 12), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_distinct_frames_finds_first_occurrences_and_the_map_back() -> None:
    a, b, c = frames(3, 0)
    video = torch.stack([a, a, b, a, c, c, b])
    first, inverse = distinct_frames(video)
    assert first == [0, 2, 4]
    assert inverse.tolist() == [0, 0, 1, 0, 2, 2, 1]
    near = a.clone()
    near[0, 0, 0] ^= 1  # one bit differs: another frame
    assert distinct_frames(torch.stack([a, near]))[0] == [0, 1]


def test_each_distinct_frame_runs_once_and_outputs_keep_frame_order() -> None:
    a, b = frames(2, 1)
    video = torch.stack([a, b, b, a, b, a, a])
    seen: list[int] = []

    def run(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.shape[0])
        return x.float().mean(dim=(1, 2, 3))[:, None] * torch.arange(1.0, 4.0)

    out = per_distinct_frame(video, run, batch_size=1)
    assert seen == [1, 1]  # two distinct frames, one pass each
    assert torch.equal(out, run(video)[: video.shape[0]])
    seen.clear()
    plain = frames(5, 2)  # no repeats: the batches it always ran in
    assert torch.equal(per_distinct_frame(plain, run, batch_size=2), run(plain)) and seen[:3] == [2, 2, 1]
    with pytest.raises(ValueError, match="no frames"):
        per_distinct_frame(plain[:0], run, 2)


def test_fid_features_of_a_held_frame_are_that_frame_s_features(tmp_path) -> None:
    metric = FID(save_scripted(TinyImageNet(), tmp_path / "tiny.pt"), batch_size=4)
    calls = []
    extract = metric._extract
    metric._extract = lambda x: calls.append(x.shape[0]) or extract(x)  # type: ignore[method-assign]
    frame = frames(1, 3)
    held = frame.expand(30, -1, -1, -1).contiguous()
    got = metric.features(held)
    assert calls == [1] and got.shape == (30, 6)
    assert torch.equal(got, extract(frame).expand(30, -1))
