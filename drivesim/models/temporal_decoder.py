"""The VAE decoder made temporal (Video LDM section 3.1.1): SD's decoder plus 3D-conv layers over time.

After every ResNet of the decoder's mid and up blocks sits the video UNet's own residual temporal
conv block (3x1x1 kernels, zero-init last conv, merged by the shared `AlphaBlender`), so at init the
temporal decoder *is* the image decoder. Time is padded by replicating the end frames (`padding`;
exports before session 13 were trained with zeros and load with zeros). The forward loop is written out here (no hooks): the
decoder's modules are the `AutoencoderKL`'s own objects, the temporal ones live under `temporal_*`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffusers import AutoencoderKL
from diffusers.models.unets.unet_2d_blocks import UNetMidBlock2D, UpDecoderBlock2D
from torch import Tensor, nn

from drivesim.models import weights
from drivesim.models.temporal import TemporalConvBlock


def _temporal_convs(resnets: Any, init_logit: float, padding: str) -> nn.ModuleList:
    return nn.ModuleList(TemporalConvBlock(r.out_channels, r.norm2.num_groups, r.norm2.eps, init_logit,
                                           padding=padding) for r in resnets)


class TemporalDecoder(nn.Module):
    """`decoder(z (B*T, C, h, w) unscaled latents, num_frames) -> (B*T, 3, H, W)` images."""

    def __init__(self, vae: AutoencoderKL, init_logit: float = 0.5, padding: str = "replicate") -> None:
        super().__init__()
        src: Any = vae  # diffusers is untyped for mypy; the attributes are checked below and by the tests
        decoder: Any = src.decoder
        if not isinstance(decoder.conv_norm_out, nn.GroupNorm):
            raise ValueError("TemporalDecoder supports group-norm decoders (AutoencoderKL), not spatial norm")
        if not isinstance(decoder.mid_block, UNetMidBlock2D):
            raise ValueError(f"TemporalDecoder needs a UNetMidBlock2D, got {type(decoder.mid_block).__name__}")
        for i, block in enumerate(decoder.up_blocks):
            if not isinstance(block, UpDecoderBlock2D):
                raise ValueError(f"TemporalDecoder does not support up block {i} of type {type(block).__name__}")
        self.post_quant_conv: Any = src.post_quant_conv
        self.decoder: Any = decoder
        self.padding = padding
        self.temporal_mid = _temporal_convs(decoder.mid_block.resnets, init_logit, padding)
        self.temporal_up = nn.ModuleList(_temporal_convs(b.resnets, init_logit, padding) for b in decoder.up_blocks)

    def forward(self, z: Tensor, num_frames: int) -> Tensor:
        if z.shape[0] % num_frames:
            raise ValueError(f"TemporalDecoder: {z.shape[0]} folded frames are not a multiple of {num_frames}")
        dec = self.decoder
        h = self.post_quant_conv(z) if self.post_quant_conv is not None else z
        h = dec.conv_in(h)
        mid = dec.mid_block
        h = self.temporal_mid[0](mid.resnets[0](h, None), num_frames)
        for j, (attn, resnet) in enumerate(zip(mid.attentions, mid.resnets[1:])):
            if attn is not None:
                h = attn(h, temb=None)
            h = self.temporal_mid[j + 1](resnet(h, None), num_frames)
        for block, temporal in zip(dec.up_blocks, self.temporal_up.children()):
            layers: Any = temporal
            for resnet, layer in zip(block.resnets, layers):
                h = layer(resnet(h, None), num_frames)
            if block.upsamplers is not None:
                for upsampler in block.upsamplers:
                    h = upsampler(h)
        return dec.conv_out(dec.conv_act(dec.conv_norm_out(h)))

    def temporal_parameters(self) -> list[nn.Parameter]:
        """What decoder fine-tuning trains (the VAE's own decoder weights stay as they are)."""
        return [p for n, p in self.named_parameters() if n.startswith("temporal_")]

    def temporal_keys(self) -> list[str]:
        return weights.weight_groups(self)["temporal"]

    def save_temporal(self, path: str | Path) -> None:
        """Write the temporal layers alone (safetensors, atomic): they load onto any same-shape VAE."""
        weights.save_groups(self, ("temporal",), path)

    def load_temporal(self, path: str | Path) -> None:
        """Read them back; a missing, extra or wrong-shape key is an error naming it."""
        weights.load_groups(self, ("temporal",), path)
