"""Tiny random SD-style UNets on disk, in diffusers layout and as original (LDM) single files.

Shared test helper: `tiny_unet(style)` builds an SD1- or SD2-style `UNet2DConditionModel`;
`to_original_layout` maps its state dict to the original checkpoint's key names (checked against
diffusers' own single-file loader in tests/test_unet_loading.py); `write_*` put them on disk.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
import yaml
from diffusers import UNet2DConditionModel
from safetensors.torch import save_file

# SD1 style: conv proj_in/out, one head count for all blocks, 2 resnets per block.
SD1_STYLE: dict[str, Any] = dict(
    sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=2,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    norm_num_groups=32, cross_attention_dim=32, attention_head_dim=4,
)
# SD2 style: linear proj_in/out, per-block head counts (16 channels per head), 1024-d text context.
SD2_STYLE: dict[str, Any] = dict(
    sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 32, 64), layers_per_block=1,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    norm_num_groups=32, cross_attention_dim=1024, attention_head_dim=(2, 2, 4), use_linear_projection=True,
)
STYLES = {"sd1": SD1_STYLE, "sd2": SD2_STYLE}
LDM_PREFIX = "model.diffusion_model."


def tiny_unet(style: str = "sd1", seed: int = 0, **overrides: Any) -> UNet2DConditionModel:
    """A random tiny UNet; norms and biases are randomised too so no weight is trivially default."""
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**{**STYLES[style], **overrides})
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return unet.eval()


def write_diffusers(unet: UNet2DConditionModel, folder: Path, pipeline: bool = False) -> Path:
    """Save in diffusers layout; `pipeline=True` puts it in `folder/unet/` like a full SD pipeline."""
    unet.save_pretrained(folder / "unet" if pipeline else folder)
    return folder


_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
           "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
_TOP = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
        "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}


def to_original_key(key: str, config: dict[str, Any]) -> str:
    """One diffusers UNet key -> its name in an original SD (LDM) checkpoint, without the prefix."""
    layers = int(config["layers_per_block"])
    up_has_attn = ["CrossAttn" in t for t in config["up_block_types"]]
    for diff, orig in _TOP.items():
        if key.startswith(diff + "."):
            return orig + key[len(diff):]
    if m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        n = 1 + i * (layers + 1) + j
        return f"input_blocks.{n}.0.{_resnet_rest(rest)}" if kind == "resnets" else f"input_blocks.{n}.1.{rest}"
    if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
        return f"input_blocks.{(int(m[1]) + 1) * (layers + 1)}.0.op.{m[2]}"
    if m := re.match(r"mid_block\.resnets\.(\d+)\.(.*)", key):
        return f"middle_block.{2 * int(m[1])}.{_resnet_rest(m[2])}"
    if m := re.match(r"mid_block\.attentions\.0\.(.*)", key):
        return f"middle_block.1.{m[1]}"
    if m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        n = i * (layers + 1) + j
        return f"output_blocks.{n}.0.{_resnet_rest(rest)}" if kind == "resnets" else f"output_blocks.{n}.1.{rest}"
    if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
        i = int(m[1])
        slot = 2 if up_has_attn[i] else 1
        return f"output_blocks.{i * (layers + 1) + layers}.{slot}.conv.{m[2]}"
    raise KeyError(f"no original-layout name for diffusers key {key!r}")


def _resnet_rest(rest: str) -> str:
    head, _, tail = rest.partition(".")
    return f"{_RESNET[head]}.{tail}"


def to_original_layout(unet: UNet2DConditionModel) -> dict[str, torch.Tensor]:
    config = dict(unet.config)
    return {LDM_PREFIX + to_original_key(k, config): v.contiguous() for k, v in unet.state_dict().items()}


def write_single_file(unet: UNet2DConditionModel, path: Path) -> Path:
    """Original-layout checkpoint: `.safetensors`, or `.ckpt` (a torch-saved {"state_dict": ...})."""
    state = to_original_layout(unet)
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save({"state_dict": state}, path)
    return path


def write_original_yaml(unet: UNet2DConditionModel, path: Path) -> Path:
    """The original LDM YAML describing `unet` (the part diffusers' config mapping reads)."""
    c = dict(unet.config)
    base = c["block_out_channels"][0]
    mult = [ch // base for ch in c["block_out_channels"]]
    attn_res = [2**i for i, t in enumerate(c["down_block_types"]) if "CrossAttn" in t]
    params: dict[str, Any] = dict(
        image_size=c["sample_size"], in_channels=c["in_channels"], out_channels=c["out_channels"],
        model_channels=base, attention_resolutions=attn_res, num_res_blocks=c["layers_per_block"],
        channel_mult=mult, transformer_depth=1, context_dim=c["cross_attention_dim"],
    )
    heads = c["attention_head_dim"]
    if c["use_linear_projection"]:
        params.update(use_linear_in_transformer=True, num_head_channels=c["block_out_channels"][0] // heads[0])
    else:
        params["num_heads"] = heads
    doc = {"model": {"params": {"unet_config": {"params": params},
                                "first_stage_config": {"params": {"ddconfig": {"ch_mult": [1, 2, 4, 4]}}}}}}
    path.write_text(yaml.safe_dump(doc))
    return path
