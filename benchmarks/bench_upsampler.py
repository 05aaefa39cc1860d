"""x4 upsampler: latent vs pixel variant at tiny widths (CPU), and sd15-width memory (estimated or on a GPU).

Tiny widths, 1 thread, measured (`--part tiny`):
- training step (forward, backward, AdamW) of the upsampler UNet (the tiny model's widths, extra
  input channels for the low-res frames, the noise-augmentation embedding) on B x T patches:
  latent variant on 16x32-latent patches (128x256 pixels of a 512x1024 frame) plus what the latent
  stage also pays per step, encoding the high-res clip and its x4-downscaled copy with the tiny
  autoencoder; pixel variant (not implemented as a stage: an equal-width UNet with 3 in / out
  channels) on 64x128 pixel patches, a quarter of the latent patch's pixel area; the same area, 128x256,
  only with --full-pixel-patch: not cheap at the tiny widths (B=2, T=8: about 12 GiB of fp32 tensors
  saved for backward by this file's own accounting, and about 4x the 64x128 step, ~35 s on 1 thread).
  Each row names its patch in the model's input (`patch`) and the pixel area it covers (`patch_pixels`);
- seconds per 512x1024 output frame per sampler step: the latent UNet on a whole 64x128-latent frame
  plus the decode (once per frame), against the pixel UNet on a 128x256 frame times 16 (convolutional
  parts scale with area; attention grows faster, so that pixel figure is a lower bound).
sd15 widths (`--part sd`): peak memory of the upsampler's training step on 512x1024 patches (64x128
latents, 8 frames, bf16 autocast, AdamW on every group) and of decoding 16 frames at 512x1024 with
the temporal decoder (SD's autoencoder widths). Without CUDA an ESTIMATE on the meta device: fp32
weights, grads and AdamW moments (16 bytes/param), the bf16 copies of the weights that autocast casts and
caches during the forward (2 bytes/param, alive through backward as the saved weights), the tensors
saved for backward (bench_train_sd's accounting, weights left out: they are those bf16 copies) and, for
the decode, the peak of live tensors.

    python benchmarks/bench_upsampler.py [--part tiny|sd|all] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import weakref
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from drivesim.atomic import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
GIB = 2**30
SD_VAE = {"in_channels": 3, "out_channels": 3, "latent_channels": 4, "block_out_channels": [128, 256, 512, 512],
          "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
          "layers_per_block": 2, "norm_num_groups": 32}


def upsampler_unet(model: str, channels: int | None = None, device: str = "cpu") -> Any:
    """The upsampler stage's UNet for `model` (as drivesim.training.build makes it); `channels` swaps the
    latent channels for pixels (3: the pixel variant)."""
    from omegaconf import OmegaConf, open_dict

    from drivesim.config import compose_command
    from drivesim.models import build_video_unet
    from drivesim.training.upsampler_module import upsampler_conditioning

    cfg: Any = OmegaConf.create(OmegaConf.to_container(compose_command("train", [f"model={model}"]).model))
    with open_dict(cfg):
        embed = int((cfg.conditioning or {}).get("embed_dim", 64))
        cfg.conditioning = upsampler_conditioning(embed)
        cfg.pretrained = None
        if channels is not None:
            cfg.latent_channels = channels
            cfg.unet.in_channels = cfg.unet.out_channels = channels
        cfg.extra_in_channels = int(cfg.latent_channels)
    with torch.device(device):
        return build_video_unet(cfg)


def _cond(x: torch.Tensor, text_dim: int) -> Any:
    """The upsampler's condition (already-augmented low-res input, its level) and a short prompt."""
    from drivesim.models import VideoCondition
    from drivesim.training.upsampler_module import LOWRES_KEY

    b = x.shape[0]
    return VideoCondition(noise_aug_level=torch.full((b,), 0.1, device=x.device), extra={LOWRES_KEY: torch.randn_like(x)},
                          text=torch.randn(b, 8, text_dim, device=x.device, dtype=x.dtype))


def _timed(fn: Any, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def train_step_s(unet: Any, shape: tuple[int, ...], repeats: int) -> float:
    opt = torch.optim.AdamW([p for p in unet.parameters()], lr=1e-5)
    x = torch.randn(shape)
    cond = _cond(x, unet.cross_attention_dim)
    t = torch.randint(0, 1000, (shape[0],))

    def step() -> None:
        loss = unet(x, t, cond).float().pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return _timed(step, repeats)


@torch.no_grad()
def forward_s(unet: Any, shape: tuple[int, ...], repeats: int) -> float:
    x = torch.randn(shape)
    cond = _cond(x, unet.cross_attention_dim)
    return _timed(lambda: unet(x, torch.tensor([500]), cond), repeats)


def tiny(batch: int, frames: int, repeats: int, full_pixel_patch: bool = False, model: str = "tiny") -> dict[str, Any]:
    from drivesim.exports import read_export

    torch.set_num_threads(1)
    torch.manual_seed(0)
    vae = read_export(REPO / "drivesim/assets/demo_cascade/autoencoder").load_vae().eval().float()
    latent, pixel = upsampler_unet(model).train(), upsampler_unet(model, channels=3).train()
    n = batch * frames
    with torch.no_grad():
        enc_hr = _timed(lambda: vae.encode_video(torch.zeros(1, 1, 3, 512, 1024)), repeats)
        enc_lr = _timed(lambda: vae.encode_video(torch.zeros(1, 1, 3, 128, 256)), repeats)
        dec_hr = _timed(lambda: vae.decode_video(torch.zeros(1, 1, 4, 64, 128)), repeats)
    down = vae.downscale  # pixels per latent position, each way

    def row(variant: str, patch: tuple[int, int], seconds: float, what: str) -> dict[str, Any]:
        scale = down if variant == "latent" else 1
        return {"s": round(seconds, 3), "samples_per_s": round(batch / seconds, 3), "input": variant,
                "patch": list(patch), "patch_pixels": [patch[0] * scale, patch[1] * scale], "what": what}

    unet_only = train_step_s(latent, (batch, frames, 4, 16, 32), repeats)
    steps = {"latent_16x32_unet": row("latent", (16, 32), unet_only, "UNet step"),
             "latent_16x32_with_encoding": row("latent", (16, 32), unet_only + n * (enc_hr + enc_lr),
                                               "UNet step + encoding the clip and its x4-down copy"),
             "pixel_64x128": row("pixel", (64, 128), train_step_s(pixel, (batch, frames, 3, 64, 128), repeats),
                                 "UNet step (a quarter of the latent patch's pixel area)")}
    if full_pixel_patch:  # the latent patch's pixel area: about 4x the 64x128 step
        steps["pixel_128x256"] = row("pixel", (128, 256), train_step_s(pixel, (batch, frames, 3, 128, 256), repeats),
                                     "UNet step (the latent patch's pixel area)")
    latent.eval()
    pixel.eval()
    per_frame_step = {"latent_64x128": forward_s(latent, (1, frames, 4, 64, 128), repeats) / frames,
                      "pixel_128x256": forward_s(pixel, (1, 2, 3, 128, 256), repeats) / 2}  # 2 frames: memory
    return {"label": f"measured, 1 thread (CPU), {model} widths, random weights", "batch": batch, "frames": frames,
            "params": {"latent": sum(p.numel() for p in latent.parameters()),
                       "pixel": sum(p.numel() for p in pixel.parameters())},
            "vae_s_per_frame": {"encode_512x1024": round(enc_hr, 4), "encode_128x256": round(enc_lr, 4),
                                "decode_512x1024": round(dec_hr, 4)},
            "train_step": steps,
            "unet_s_per_512x1024_frame_per_step": {
                "latent": round(per_frame_step["latent_64x128"], 4),
                "pixel_lower_bound_16x_128x256": round(16 * per_frame_step["pixel_128x256"], 4)},
            "s_per_512x1024_output_frame_20_steps": {
                "latent": round(20 * per_frame_step["latent_64x128"] + dec_hr, 3),
                "pixel_lower_bound": round(20 * 16 * per_frame_step["pixel_128x256"], 3)}}


class PeakLive(TorchDispatchMode):
    """Peak bytes of live storages made inside (meta tensors work: shapes only); a storage counts once, however
    many tensors (views, in-place results) share it, until the last of them is gone; inputs and weights not counted."""

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0
        self.holders: dict[int, int] = {}  # storage -> tensors made inside that still hold it

    def _release(self, key: int, nbytes: int) -> None:
        self.holders[key] -= 1
        if self.holders[key] == 0:
            del self.holders[key]
            self.live -= nbytes

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key, nbytes = storage._cdata, storage.nbytes()
            if key not in self.holders:
                if any(isinstance(a, torch.Tensor) and a.untyped_storage()._cdata == key for a in args):
                    continue  # an in-place result or a view of an input made outside
                self.holders[key] = 0
                self.live += nbytes
                self.peak = max(self.peak, self.live)
            self.holders[key] += 1
            weakref.finalize(t, self._release, key, nbytes)
        return out


def saved_bytes(unet: Any, x: torch.Tensor, cond: Any) -> dict[str, float]:
    """GiB saved for backward by a forward pass, in all and with gradient checkpointing (the layer inputs
    plus the largest layer's own), attention kept as a flash / memory-efficient SDPA kernel keeps it (q, k,
    v, out), as benchmarks/bench_train_sd.py counts it. Saved weights (parameters and views of them) are
    left out, and their bytes reported apart: under autocast they are the cached bf16 weight copies, which
    the estimate counts once for the whole model."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_train_sd import _KeptBySdpaKernel

    inputs: list[int] = []
    per_layer: list[int] = []
    total: dict[int, int] = {}
    weights: dict[int, int] = {}
    params = {id(p) for p in unet.parameters()}

    def run(step: Any, *args: Any) -> torch.Tensor:
        inputs.append(sum(a.numel() * a.element_size() for a in args if isinstance(a, torch.Tensor)))
        seen: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            base = t._base if t._base is not None else t
            if id(base) in params:
                weights[id(base)] = base.numel() * base.element_size()
            else:
                seen[id(t)] = total[id(t)] = t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = step(*args)
        per_layer.append(sum(seen.values()))
        return out  # type: ignore[no-any-return]

    real_sdpa = torch.nn.functional.scaled_dot_product_attention

    def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *a: Any, **kw: Any) -> torch.Tensor:
        with torch.no_grad():
            result = real_sdpa(q, k, v, *a, **kw)
        return _KeptBySdpaKernel.apply(q, k, v, result)  # type: ignore[no-any-return]

    unet._run = run
    torch.nn.functional.scaled_dot_product_attention = sdpa  # type: ignore[assignment]
    try:
        unet(x, torch.tensor([500], device=x.device), cond)
    finally:
        torch.nn.functional.scaled_dot_product_attention = real_sdpa
        del unet._run
    no_ckpt, ckpt = sum(total.values()), sum(inputs) + max(per_layer, default=0)
    return {"no_checkpointing_gib": no_ckpt / GIB, "checkpointing_gib": ckpt / GIB, "no_checkpointing_bytes": no_ckpt,
            "checkpointing_bytes": ckpt, "saved_weights_bytes": sum(weights.values())}


def sd_estimate(model: str = "sd15", latent: tuple[int, int] = (64, 128), frames: int = 8,
                vae_config: dict[str, Any] | None = None, decode_frames: int = 16) -> dict[str, Any]:
    from diffusers import AutoencoderKL

    from drivesim.models.vae import VideoVAE

    unet = upsampler_unet(model, device="meta").to(torch.bfloat16)
    total = sum(p.numel() for p in unet.parameters())
    # Every group trains: fp32 master weights, fp32 grads, 2 fp32 AdamW moments; and the bf16 copy of each
    # weight that autocast makes in the forward and caches (held through backward as the saved weights).
    parts = {"weights_fp32": 4 * total, "grads_fp32": 4 * total, "adamw_moments_fp32": 8 * total,
             "autocast_bf16_weight_copies": 2 * total}
    state = (parts["weights_fp32"] + parts["grads_fp32"] + parts["adamw_moments_fp32"]) / GIB
    copies = parts["autocast_bf16_weight_copies"] / GIB
    x = torch.randn(1, frames, unet.in_channels, *latent, device="meta", dtype=torch.bfloat16)
    act = saved_bytes(unet, x, _cond(x, unet.cross_attention_dim))
    parts |= {"activations_checkpointing": act["checkpointing_bytes"],
              "activations_no_checkpointing": act["no_checkpointing_bytes"]}
    with torch.device("meta"):
        video_vae = VideoVAE(AutoencoderKL(**(vae_config or SD_VAE)), temporal_decoder=True).to(torch.bfloat16)
    weights = sum(p.numel() * p.element_size() for p in video_vae.parameters()) / GIB
    z = torch.zeros(1, decode_frames, video_vae.latent_channels, *latent, device="meta", dtype=torch.bfloat16)
    decode = {}
    for chunk in (16, 8, 4):
        with torch.no_grad(), PeakLive() as mode:
            video_vae.decode_video(z, chunk)
        decode[f"chunk_{chunk}"] = round(weights + mode.peak / GIB, 3)
    pixels = [latent[0] * video_vae.downscale, latent[1] * video_vae.downscale]
    return {"label": "ESTIMATE by exact shape accounting on the meta device (not measured on a GPU); allocator "
                     "overhead, fragmentation and framework buffers not included",
            "upsampler_train_step": {
                "model": model, "patch_pixels": pixels, "latent": list(latent), "frames": frames, "params": total,
                "weights_grads_adamw_gib": round(state, 3), "autocast_bf16_weight_copies_gib": round(copies, 3),
                "activations_checkpointing_gib": round(act["checkpointing_gib"], 3),
                "activations_no_checkpointing_gib": round(act["no_checkpointing_gib"], 3),
                "total_checkpointing_gib": round(state + copies + act["checkpointing_gib"], 2),
                "total_no_checkpointing_gib": round(state + copies + act["no_checkpointing_gib"], 2),
                "bytes": parts, "autocast_bf16_weight_copies_note": (
                    "2 bytes/param, in both totals; without checkpointing they are alive from the forward through "
                    "backward (a CPU autocast check matches this sum within 1%); a checkpointed forward was seen "
                    "not to keep them (recast per layer in backward), so there the term is an upper bound"),
                "attention": "flash / memory-efficient SDPA (q, k, v, out kept)", "precision": "bf16 autocast"},
            "temporal_decoder_decode": {"frames": decode_frames, "pixels": pixels, "dtype": "bf16",
                                        "weights_gib": round(weights, 4), "peak_gib_by_decode_chunk": decode}}


def sd_measure(model: str = "sd15", latent: tuple[int, int] = (64, 128), frames: int = 8,
               vae_config: dict[str, Any] | None = None, decode_frames: int = 16,
               device: str = "cuda") -> dict[str, Any]:
    """Peak GPU memory and time of the same two jobs, measured (`device="cpu"` runs the code, times only)."""
    from diffusers import AutoencoderKL

    from drivesim.models.vae import VideoVAE

    cuda = device.startswith("cuda")

    def reset() -> None:
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()

    def peak() -> float | None:
        return round(torch.cuda.max_memory_allocated() / GIB, 3) if cuda else None

    rows: dict[str, Any] = {}
    vae_cfg: dict[str, Any] = vae_config or SD_VAE
    down = 2 ** (len(vae_cfg["block_out_channels"]) - 1)  # as VideoVAE.downscale
    pixels = [latent[0] * down, latent[1] * down]
    for checkpointing in (True, False):
        unet = upsampler_unet(model, device=device)
        unet.enable_gradient_checkpointing(checkpointing)
        opt = torch.optim.AdamW(unet.parameters(), lr=1e-5)
        x = torch.randn(1, frames, unet.in_channels, *latent, device=device)
        cond = _cond(x, unet.cross_attention_dim)
        reset()
        times = []
        for _ in range(3):
            start = time.perf_counter()
            with torch.autocast(device.split(":")[0], dtype=torch.bfloat16):
                loss = unet(x, torch.tensor([500], device=device), cond).float().pow(2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        rows[f"train_step_checkpointing_{checkpointing}"] = {"peak_gpu_gib": peak(), "step_s": round(min(times[1:]), 3),
                                                             "latent": list(latent), "patch_pixels": pixels}
        del unet, opt
    video_vae = VideoVAE(AutoencoderKL(**vae_cfg), temporal_decoder=True).to(device, torch.bfloat16)
    z = torch.zeros(1, decode_frames, video_vae.latent_channels, *latent, device=device, dtype=torch.bfloat16)
    for chunk in (16, 8, 4):
        reset()
        start = time.perf_counter()
        with torch.no_grad():
            video_vae.decode_video(z, chunk)
        if cuda:
            torch.cuda.synchronize()
        rows[f"decode_chunk_{chunk}"] = {"peak_gpu_gib": peak(), "s": round(time.perf_counter() - start, 3)}
    name = torch.cuda.get_device_name() if cuda else device
    return {"label": f"measured on {name}", "model": model, "latent": list(latent), "frames": frames,
            "decode_frames": decode_frames, "rows": rows}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["tiny", "sd", "all"], default="all")
    parser.add_argument("--device", default="cpu", help="cuda: measure the sd15 figures on a GPU")
    parser.add_argument("--model", default="tiny", help="widths of the CPU part (micro: tests)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--full-pixel-patch", action="store_true",
                        help="also time the pixel step on 128x256 patches, the latent patch's pixel area (~12 GiB)")
    parser.add_argument("--out", help="result JSON (default benchmarks/results/bench_upsampler_<device>.json)")
    args = parser.parse_args(argv)
    record: dict[str, Any] = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "device": args.device}
    if args.part in ("tiny", "all"):
        record["tiny"] = tiny(args.batch, args.frames, args.repeats, args.full_pixel_patch, args.model)
    if args.part in ("sd", "all"):
        record["sd15"] = sd_measure(device=args.device) if args.device.startswith("cuda") else sd_estimate()
    print(json.dumps(record, indent=2))
    out = Path(args.out) if args.out else RESULTS / f"bench_upsampler_{args.device}.json"
    atomic_write_text(out, json.dumps(record, indent=2) + "\n")
    return record


if __name__ == "__main__":
    main()
