"""The inflated video UNet: a diffusers SD 1.x/2.x UNet plus temporal layers after every spatial layer.

The spatial submodules are the source `UNet2DConditionModel`'s own objects under their own names, so
the state dict holds every source key unchanged; the temporal layers live in `temporal_*` module
lists indexed like the spatial ones, condition encoders under `condition_*`. The forward loop is
written out here (as diffusers' `UNetMotionModel` does): spatial layers see folded `(b t)` frames,
temporal layers get the frame count as an argument; no hooks, no per-call state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple, cast

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.unets.unet_2d_blocks import (
    CrossAttnDownBlock2D,
    CrossAttnUpBlock2D,
    DownBlock2D,
    UNetMidBlock2DCrossAttn,
    UpBlock2D,
)
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from drivesim.models import weights
from drivesim.models.condition import ConditionResiduals, VideoCondition
from drivesim.models.folding import fold_frames, repeat_per_frame, unfold_frames
from drivesim.models.loading import load_image_unet
from drivesim.models.temporal import TemporalAttentionBlock, TemporalConvBlock


class _Frames(NamedTuple):
    """What the temporal layers need to know about this call: passed down, never stored."""

    num_frames: int
    image_only: Tensor | None  # (B,) bool for a mixed batch, else None
    skip: bool  # every sample is image-only: temporal layers would return their input exactly


class VideoUNet(nn.Module):
    """`model(sample (B,T,C,H,W), timesteps (B,) | (B,T), cond) -> (B,T,C_out,H,W)`."""

    def __init__(self, unet: UNet2DConditionModel, *, condition_encoders: nn.Module | None = None,
                 extra_in_channels: int = 0, temporal_conv: bool = True, temporal_attention: bool = True,
                 blend_init_logit: float = 0.5, temporal_time_embedding: bool = False) -> None:
        super().__init__()
        check_supported(unet)
        src: Any = unet  # diffusers is untyped for mypy; the attributes below are checked by the tests
        self.image_config: dict[str, Any] = dict(src.config)
        self.temporal_options: dict[str, Any] = {
            "extra_in_channels": extra_in_channels, "temporal_conv": temporal_conv,
            "temporal_attention": temporal_attention, "blend_init_logit": blend_init_logit,
            "temporal_time_embedding": temporal_time_embedding,
        }
        # Spatial modules: the source UNet's own objects, registered under their own names (typed Any:
        # diffusers' blocks are not typed for mypy).
        self.conv_in: nn.Conv2d = src.conv_in
        self.time_proj: nn.Module = src.time_proj
        self.time_embedding: Any = src.time_embedding
        self.time_embed_act: Any = src.time_embed_act  # None for SD 1.x/2.x (time_embedding_act_fn)
        self.down_blocks: Any = src.down_blocks
        self.mid_block: Any = src.mid_block
        self.up_blocks: Any = src.up_blocks
        self.conv_norm_out: Any = src.conv_norm_out
        self.conv_act: Any = src.conv_act
        self.conv_out: nn.Conv2d = src.conv_out
        self.num_upsamplers: int = src.num_upsamplers

        emb_channels = int(src.time_embedding.linear_2.out_features) if temporal_time_embedding else None

        def convs(block: Any) -> nn.ModuleList:
            if block is None or not temporal_conv:
                return nn.ModuleList()
            return nn.ModuleList(TemporalConvBlock(r.out_channels, r.norm2.num_groups, r.norm2.eps,
                                                   blend_init_logit, emb_channels) for r in block.resnets)

        def attns(block: Any) -> nn.ModuleList:
            if block is None or not temporal_attention or not hasattr(block, "attentions"):
                return nn.ModuleList()
            return nn.ModuleList(TemporalAttentionBlock(a.config.in_channels, a.config.num_attention_heads,
                                                        blend_init_logit) for a in block.attentions)

        self.temporal_down_convs = nn.ModuleList(convs(b) for b in self.down_blocks)
        self.temporal_down_attns = nn.ModuleList(attns(b) for b in self.down_blocks)
        self.temporal_mid_convs = convs(self.mid_block)
        self.temporal_mid_attns = attns(self.mid_block)
        self.temporal_up_convs = nn.ModuleList(convs(b) for b in self.up_blocks)
        self.temporal_up_attns = nn.ModuleList(attns(b) for b in self.up_blocks)

        self.condition_encoders = condition_encoders
        # A setting, not per-call state: trade compute for memory when training big backbones.
        self.gradient_checkpointing = False
        # Extra input channels (e.g. the upsampler's low-res frames) enter through their own zero-init
        # conv added to conv_in's output, so the spatial conv_in keeps its source shape and weights.
        self.condition_extra_in: nn.Conv2d | None = None
        if extra_in_channels:
            conv = nn.Conv2d(extra_in_channels, self.conv_in.out_channels, self.conv_in.kernel_size,
                             padding=self.conv_in.padding)
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)  # type: ignore[arg-type]
            self.condition_extra_in = conv

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_image_unet(cls, unet: UNet2DConditionModel, **options: Any) -> VideoUNet:
        """Inflate `unet` (its modules are taken over, not copied); options go to the constructor."""
        return cls(unet, **options)

    @classmethod
    def from_pretrained_image(cls, path: str | Path, config: str | Path | None = None,
                              original_config: str | Path | None = None, **options: Any) -> VideoUNet:
        """Inflate a local SD UNet: diffusers UNet folder, pipeline folder, or single `.safetensors`/`.ckpt`."""
        return cls(load_image_unet(path, config=config, original_config=original_config), **options)

    def to_image_unet(self) -> UNet2DConditionModel:
        """A standalone copy of the spatial backbone (e.g. after the image stage or DreamBooth), for
        diffusers' image pipelines; the temporal and condition weights are left out."""
        image: Any = UNet2DConditionModel.from_config(self.image_config)
        spatial = set(self.weight_groups()["spatial"])
        image.load_state_dict({k: v for k, v in self.state_dict().items() if k in spatial}, strict=True)
        return cast(UNet2DConditionModel, image.to(device=self.conv_in.weight.device, dtype=self.dtype))

    # ------------------------------------------------------------------ properties
    @property
    def in_channels(self) -> int:
        return int(self.image_config["in_channels"])

    @property
    def out_channels(self) -> int:
        return int(self.image_config["out_channels"])

    @property
    def cross_attention_dim(self) -> int:
        return _one_cross_attention_dim(self.image_config["cross_attention_dim"])

    @property
    def time_embed_dim(self) -> int:
        return int(self.time_embedding.linear_2.out_features)

    @property
    def block_out_channels(self) -> tuple[int, ...]:
        return tuple(self.image_config["block_out_channels"])

    @property
    def dtype(self) -> torch.dtype:
        return self.conv_in.weight.dtype

    # ------------------------------------------------------------------ forward
    def forward(self, sample: Tensor, timesteps: Tensor | float | int,
                cond: VideoCondition | None = None) -> Tensor:
        if sample.ndim != 5 or sample.shape[2] != self.in_channels:
            raise ValueError(f"sample must be (B, T, {self.in_channels}, H, W), got {tuple(sample.shape)}")
        batch, frames, _, height, width = sample.shape
        fr = self._frames(cond, batch, frames, sample.device)
        x = fold_frames(sample)
        if self.image_config["center_input_sample"]:
            x = 2 * x - 1.0
        frame_timesteps = self._frame_timesteps(timesteps, batch, frames, x.device)
        emb = self.time_embedding(self.time_proj(frame_timesteps).to(x.dtype))
        if self.time_embed_act is not None:
            emb = self.time_embed_act(emb)
        text = self._frame_text(cond.text if cond is not None else None, batch, frames, x)
        res = ConditionResiduals()
        if self.condition_encoders is not None and cond is not None:
            res = self.condition_encoders(cond, batch=batch, frames=frames, height=height, width=width)
        emb = _add(emb, res.time_emb, "ConditionResiduals.time_emb")

        h = _add(self.conv_in(x), res.conv_in, "ConditionResiduals.conv_in")
        h = self._add_extra(h, cond, batch, frames)
        skips = [h]
        for i, block in enumerate(self.down_blocks):
            attentions = getattr(block, "attentions", None)
            for j, resnet in enumerate(block.resnets):
                h = self._run(self._resnet_step, resnet, self.temporal_down_convs[i], j, h, emb, fr)
                if attentions is not None:
                    h = self._run(self._attention_step, attentions[j], self.temporal_down_attns[i], j, h, text, fr)
                if j == len(block.resnets) - 1 and i < len(res.down_blocks):
                    h = _add(h, res.down_blocks[i], f"ConditionResiduals.down_blocks[{i}]")
                skips.append(h)
            if block.downsamplers is not None:
                for downsampler in block.downsamplers:
                    h = downsampler(h)
                skips.append(h)

        if self.mid_block is not None:
            h = self._run(self._resnet_step, self.mid_block.resnets[0], self.temporal_mid_convs, 0, h, emb, fr)
            for j, (attn, resnet) in enumerate(zip(self.mid_block.attentions, self.mid_block.resnets[1:])):
                h = self._run(self._attention_step, attn, self.temporal_mid_attns, j, h, text, fr)
                h = self._run(self._resnet_step, resnet, self.temporal_mid_convs, j + 1, h, emb, fr)

        factor = 2**self.num_upsamplers
        needs_size = height % factor != 0 or width % factor != 0
        for i, block in enumerate(self.up_blocks):
            block_skips, skips = skips[-len(block.resnets):], skips[:-len(block.resnets)]
            upsample_size = skips[-1].shape[2:] if needs_size and i < len(self.up_blocks) - 1 else None
            attentions = getattr(block, "attentions", None)
            for j, resnet in enumerate(block.resnets):
                h = torch.cat([h, block_skips[-1 - j]], dim=1)
                h = self._run(self._resnet_step, resnet, self.temporal_up_convs[i], j, h, emb, fr)
                if attentions is not None:
                    h = self._run(self._attention_step, attentions[j], self.temporal_up_attns[i], j, h, text, fr)
            if block.upsamplers is not None:
                for upsampler in block.upsamplers:
                    h = upsampler(h, upsample_size)

        if self.conv_norm_out is not None:
            h = self.conv_act(self.conv_norm_out(h))
        out = unfold_frames(self.conv_out(h), frames)
        blend = getattr(self.condition_encoders, "blend", None)
        if blend is not None and cond is not None and cond.context_latents is not None:
            assert cond.context_mask is not None  # checked by the condition encoders
            out = blend(out, sample, unfold_frames(frame_timesteps, frames), cond.context_latents, cond.context_mask)
        guess_blend = getattr(self.condition_encoders, "guess_blend", None)
        if guess_blend is not None and cond is not None and cond.guess is not None:
            out = guess_blend.blend_guess(out, sample, unfold_frames(frame_timesteps, frames), cond.guess)
        return out

    def _run(self, step: Any, *args: Any) -> Tensor:
        """One spatial layer and its temporal layer, recomputed in backward when checkpointing is on."""
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return cast(Tensor, checkpoint(step, *args, use_reentrant=False))
        return cast(Tensor, step(*args))

    def _resnet_step(self, resnet: nn.Module, temporal: nn.Module, index: int, h: Tensor, emb: Tensor,
                     fr: _Frames) -> Tensor:
        return self._temporal(temporal, index, resnet(h, emb), fr, emb)

    def _attention_step(self, attn: nn.Module, temporal: nn.Module, index: int, h: Tensor, text: Tensor,
                        fr: _Frames) -> Tensor:
        return self._temporal(temporal, index, attn(h, encoder_hidden_states=text, return_dict=False)[0], fr)

    @staticmethod
    def _temporal(layers: nn.Module, index: int, h: Tensor, fr: _Frames, emb: Tensor | None = None) -> Tensor:
        layer_list = cast(nn.ModuleList, layers)
        if fr.skip or index >= len(layer_list):
            return h
        if emb is None:
            return cast(Tensor, layer_list[index](h, fr.num_frames, fr.image_only))
        return cast(Tensor, layer_list[index](h, fr.num_frames, fr.image_only, emb))

    @staticmethod
    def _frames(cond: VideoCondition | None, batch: int, frames: int, device: torch.device) -> _Frames:
        flag = cond.image_only if cond is not None else False
        if isinstance(flag, bool):
            return _Frames(frames, None, flag)
        mask = flag.to(device=device, dtype=torch.bool)
        if mask.ndim == 0:
            mask = mask.expand(batch)
        if tuple(mask.shape) != (batch,):
            raise ValueError(f"VideoCondition.image_only must be a bool or a ({batch},) bool tensor, "
                             f"got shape {tuple(mask.shape)}")
        if bool(mask.all()):
            return _Frames(frames, None, True)
        return _Frames(frames, mask if bool(mask.any()) else None, False)

    def _frame_timesteps(self, timesteps: Tensor | float | int, batch: int, frames: int,
                         device: torch.device) -> Tensor:
        t = torch.as_tensor(timesteps, device=device)
        if t.ndim == 0:
            return t.expand(batch * frames)
        if tuple(t.shape) == (batch,):
            return repeat_per_frame(t, frames)
        if tuple(t.shape) == (batch, frames):
            return fold_frames(t)
        raise ValueError(f"timesteps must be (B,) = ({batch},) or (B, T) = ({batch}, {frames}), "
                         f"got {tuple(t.shape)}")

    def _frame_text(self, text: Tensor | None, batch: int, frames: int, like: Tensor) -> Tensor:
        dim = self.cross_attention_dim
        if text is None:
            # The null text: one zero token. SD's k/v projections have no bias, so cross-attention
            # then contributes only its output bias, the same for every sample.
            return like.new_zeros(batch * frames, 1, dim)
        if text.shape[-1] != dim:
            raise ValueError(f"VideoCondition.text must end in cross_attention_dim {dim}, got "
                             f"{tuple(text.shape)}; project it in the text-encoder wrapper")
        if text.ndim == 3 and text.shape[0] == batch:
            return repeat_per_frame(text.to(like.dtype), frames)
        if text.ndim == 4 and tuple(text.shape[:2]) == (batch, frames):
            return fold_frames(text.to(like.dtype))
        raise ValueError(f"VideoCondition.text must be (B, L, D) or (B, T, L, D) with B={batch}, T={frames}; "
                         f"got {tuple(text.shape)}")

    def _add_extra(self, h: Tensor, cond: VideoCondition | None, batch: int, frames: int) -> Tensor:
        extra = cond.extra if cond is not None else {}
        if not extra:
            return h
        if self.condition_extra_in is None:
            raise ValueError(f"VideoCondition.extra {sorted(extra)} given but the model has no extra input "
                             "channels (set extra_in_channels)")
        x = torch.cat([extra[k] for k in sorted(extra)], dim=2)
        if x.ndim != 5 or tuple(x.shape[:2]) != (batch, frames) or x.shape[2] != self.condition_extra_in.in_channels:
            raise ValueError(f"VideoCondition.extra concatenated to {tuple(x.shape)}, expected "
                             f"({batch}, {frames}, {self.condition_extra_in.in_channels}, H, W)")
        return h + self.condition_extra_in(fold_frames(x).to(h.dtype))

    def enable_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Recompute each (spatial layer, temporal layer) pair in backward instead of storing it."""
        self.gradient_checkpointing = enabled

    # ------------------------------------------------------------------ weight groups
    def weight_groups(self) -> dict[str, list[str]]:
        """State-dict keys per group: `spatial` (source keys), `condition`, `temporal`."""
        return weights.weight_groups(self)

    def save_group(self, group: str, path: str | Path) -> None:
        weights.save_groups(self, (group,), path)

    def load_group(self, group: str, path: str | Path) -> None:
        weights.load_groups(self, (group,), path)

    def save_temporal(self, path: str | Path) -> None:
        """Every non-source key (temporal + condition): the part that moves between backbones."""
        weights.save_groups(self, weights.NON_SPATIAL, path)

    def load_temporal(self, path: str | Path) -> None:
        weights.load_groups(self, weights.NON_SPATIAL, path)

    def freeze_spatial(self) -> None:
        """Train phi only (the `temporal` stage): source parameters stop taking gradients."""
        weights.freeze_group(self, "spatial")


def _add(h: Tensor, residual: Tensor | None, name: str) -> Tensor:
    if residual is None:
        return h
    if residual.shape != h.shape:
        raise ValueError(f"{name} has shape {tuple(residual.shape)}, expected {tuple(h.shape)}")
    return h + residual


# Config options of UNet2DConditionModel that the forward loop does not implement, with the value
# SD 1.x/2.x use. Anything else must fail at construction, never be silently dropped.
_PLAIN_OPTIONS: dict[str, Any] = {
    "class_embed_type": None, "num_class_embeds": None, "addition_embed_type": None,
    "encoder_hid_dim": None, "encoder_hid_dim_type": None, "time_cond_proj_dim": None,
    "time_embedding_type": "positional", "dual_cross_attention": False,
    "attention_type": "default", "cross_attention_norm": None,
}
# Handled inside diffusers' own blocks, which the forward loop calls as they are: resnet_time_scale_shift,
# only_cross_attention, upcast_attention, use_linear_projection, transformer_layers_per_block,
# per-block layers/heads, conv kernels, center_input_sample; time_embedding_act_fn is applied here.


def _one_cross_attention_dim(value: Any) -> int:
    """The one text width every cross-attention takes (a per-block list must repeat one value: the
    same text tensor reaches every block, as in UNet2DConditionModel's forward)."""
    dims = set(value) if isinstance(value, (list, tuple)) else {value}
    if len(dims) != 1 or not all(isinstance(d, int) for d in dims):
        raise ValueError(f"VideoUNet needs one cross_attention_dim for all blocks, got {value!r}")
    return int(dims.pop())


def check_supported(unet: Any) -> None:
    """Raise a clear error for a UNet feature the video forward loop would otherwise ignore."""
    if not isinstance(unet, UNet2DConditionModel):
        raise TypeError(f"VideoUNet inflates a diffusers UNet2DConditionModel, got {type(unet).__name__}")
    src: Any = unet
    cfg: Any = src.config
    for key, plain in _PLAIN_OPTIONS.items():
        if cfg.get(key, plain) != plain:
            raise ValueError(f"VideoUNet does not support UNet2DConditionModel {key}={cfg[key]!r} "
                             f"(SD 1.x/2.x use {plain!r})")
    _one_cross_attention_dim(cfg.get("cross_attention_dim"))
    for i, block in enumerate(src.down_blocks):
        if not isinstance(block, (CrossAttnDownBlock2D, DownBlock2D)):
            raise ValueError(f"VideoUNet does not support down block {i} of type {type(block).__name__}")
    for i, block in enumerate(src.up_blocks):
        if not isinstance(block, (CrossAttnUpBlock2D, UpBlock2D)):
            raise ValueError(f"VideoUNet does not support up block {i} of type {type(block).__name__}")
        if getattr(block, "s1", None) is not None:
            raise ValueError("VideoUNet does not support FreeU; disable it on the image UNet first")
    if src.mid_block is not None and not isinstance(src.mid_block, UNetMidBlock2DCrossAttn):
        raise ValueError(f"VideoUNet does not support mid block {type(src.mid_block).__name__}")
