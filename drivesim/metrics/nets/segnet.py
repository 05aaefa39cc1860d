"""The layout segmentation network: a small U-Net labelling every pixel background or an object class.

Channel 0 is background, channel k + 1 the class `drivesim.vocab.CLASSES[k]`. Input uint8
(N, 3, H, W) frames at any size divisible by 8 (the protocol's frame size); output logits at the same size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from drivesim.vocab import CLASSES

NUM_SEG_CLASSES = len(CLASSES) + 1


@dataclass(frozen=True)
class SegNetConfig:
    widths: tuple[int, int, int, int] = (16, 32, 64, 96)
    num_classes: int = NUM_SEG_CLASSES

    def to_dict(self) -> dict:
        return asdict(self)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(min(8, cout), cout), nn.SiLU(),
        nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(min(8, cout), cout), nn.SiLU(),
    )


class LayoutSegNet(nn.Module):
    def __init__(self, config: SegNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or SegNetConfig()
        w = self.config.widths
        self.down = nn.ModuleList([_block(3, w[0])] + [_block(w[i], w[i + 1]) for i in range(len(w) - 1)])
        self.up = nn.ModuleList([_block(w[i + 1] + w[i], w[i]) for i in reversed(range(len(w) - 1))])
        self.head = nn.Conv2d(w[0], self.config.num_classes, 1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W) -> logits (N, num_classes, H, W)."""
        x = frames.to(torch.float32) / 127.5 - 1.0
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.avg_pool2d(x, 2))
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = block(torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="nearest"), skip], 1))
        return self.head(x)

    @torch.no_grad()
    def predict(self, frames: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
        """uint8 (N, 3, H, W) -> (N, H, W) int64 labels (0 background, k + 1 = CLASSES[k]). Channels-last
        on the CPU: about 1.5x faster for this net (0.047 vs 0.069 s per 128x256 frame on 2 cores)."""
        fmt = torch.channels_last if frames.device.type == "cpu" else torch.contiguous_format
        self.to(memory_format=fmt)  # type: ignore[call-overload]
        out = [self(frames[i:i + batch_size].contiguous(memory_format=fmt)).argmax(1)
               for i in range(0, frames.shape[0], batch_size)]
        return torch.cat(out)


def build_segnet(config: dict) -> LayoutSegNet:
    """The network of a saved config dict (the weights file's metadata)."""
    return LayoutSegNet(SegNetConfig(widths=tuple(config.get("widths", SegNetConfig.widths)),  # type: ignore[arg-type]
                                     num_classes=int(config.get("num_classes", NUM_SEG_CLASSES))))
