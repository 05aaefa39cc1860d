"""Layout adherence on hand-made frames: perfect frames score like real, shifted boxes score worse."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from metrics_fixtures import save_scripted
from torch import nn

from drivesim.metrics import MissingExtractorError
from drivesim.metrics.layout import TorchScriptDetector, score_frames
from drivesim.metrics.videos import CondBox, FrameCond


class Bright(nn.Module):
    """Labels every pixel brighter than grey 128 as object class 1."""

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return (frames.float().mean(1) > 128).long()


BOXES = [(10.0, 10.0, 40.0, 30.0), (60.0, 20.0, 100.0, 50.0), (110.0, 5.0, 114.0, 9.0)]  # last: 4 px, ignored


def frames_with(boxes: list[tuple[float, float, float, float]], t: int = 3) -> torch.Tensor:
    x = torch.zeros(t, 3, 64, 128, dtype=torch.uint8)
    for x0, y0, x1, y1 in boxes:
        x[:, :, int(y0):int(y1), int(x0):int(x1)] = 255
    return x


def conds(t: int = 3) -> list[FrameCond]:
    return [FrameCond(k / 12, boxes=tuple(CondBox(str(i), "car", b) for i, b in enumerate(BOXES))) for k in range(t)]


@pytest.fixture(scope="module")
def detector(tmp_path_factory) -> TorchScriptDetector:
    return TorchScriptDetector(save_scripted(Bright(), tmp_path_factory.mktemp("layout") / "bright.pt"))


def test_perfect_frames_find_every_box_and_hallucinate_nothing(detector: TorchScriptDetector) -> None:
    s = score_frames(detector.predict(frames_with(BOXES)), conds(), min_box_px=16).summary()
    assert s == {"recall": 1.0, "boxes": 6, "hallucinated_area": 0.0, "frames": 3}


def test_shifted_boxes_score_worse(detector: TorchScriptDetector) -> None:
    shifted = [(x0 + 35, y0 + 12, x1 + 35, y1 + 12) for x0, y0, x1, y1 in BOXES[:2]]
    s = score_frames(detector.predict(frames_with(shifted)), conds(), min_box_px=16).summary()
    assert s["recall"] < 1.0 and s["hallucinated_area"] > 0.05


def test_empty_frames_find_nothing(detector: TorchScriptDetector) -> None:
    s = score_frames(detector.predict(frames_with([])), conds(), min_box_px=16).summary()
    assert s["recall"] == 0.0 and s["hallucinated_area"] == 0.0


def test_logit_detectors_are_argmaxed(tmp_path: Path) -> None:
    class TwoClass(nn.Module):
        def forward(self, frames: torch.Tensor) -> torch.Tensor:
            bright = frames.float().mean(1, keepdim=True) / 255
            return torch.cat([1 - bright, bright], 1)

    det = TorchScriptDetector(save_scripted(TwoClass(), tmp_path / "two.pt"))
    assert score_frames(det.predict(frames_with(BOXES)), conds(), 16).summary()["recall"] == 1.0


def test_mismatched_inputs_and_missing_files_are_errors(tmp_path: Path, detector: TorchScriptDetector) -> None:
    with pytest.raises(ValueError, match="T condition records"):
        score_frames(detector.predict(frames_with(BOXES)), conds(2))
    with pytest.raises(MissingExtractorError, match="absent.pt"):
        TorchScriptDetector(tmp_path / "absent.pt")


def test_missing_shipped_weights_name_the_file_and_the_training_command(tmp_path: Path, monkeypatch) -> None:
    from drivesim.metrics.nets.segnet import build_segnet
    from drivesim.metrics.nets.weights import LAYOUT_NET, load_net

    monkeypatch.setenv("DRIVESIM_METRIC_WEIGHTS", str(tmp_path))
    with pytest.raises(MissingExtractorError) as err:
        load_net(LAYOUT_NET, build_segnet)
    text = str(err.value)
    assert "layout-seg-v1.safetensors" in text and "python -m drivesim.metrics.nets.train layout" in text
    assert "\n" not in text
