"""Per-frame cost of the video UNet beside the plain image UNet and diffusers' video UNets.

For each model config (tiny, and the SD-1.5 widths at a small latent size), builds at equal widths:
the plain `UNet2DConditionModel` (frames as batch), drivesim's `VideoUNet`, diffusers'
`UNetSpatioTemporalConditionModel` (SVD) and `UNetMotionModel` (AnimateDiff). All get the same
inputs: one chunk of T frames and 77 text tokens. Reports parameters, FLOPs per frame
(torch.utils.flop_counter), best-of-N seconds per frame, and achieved GFLOP/s against the measured
float32/bf16 matmul peaks. One process, models built and freed one at a time.

    python benchmarks/bench_unet.py                                  # CPU: tiny + sd15 at 16x32
    python benchmarks/bench_unet.py --device cuda --size 64x128 --dtype bfloat16
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel, UNetSpatioTemporalConditionModel
from torch.utils.flop_counter import FlopCounterMode

from drivesim.config.compose import compose_command
from drivesim.models import VideoCondition, VideoUNet

RESULTS = Path(__file__).resolve().parent / "results"
TOKENS = 77


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, repeats: int = 20) -> float:
    """Best GFLOP/s of an n x n matmul: the ceiling the UNets are measured against."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call; this call doubles as the warm-up."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def svd_kwargs(unet_cfg: dict[str, Any]) -> dict[str, Any]:
    """The SVD UNet at the image UNet's widths, head counts and block layout."""
    heads = unet_cfg.get("attention_head_dim", 8)
    n = len(unet_cfg["block_out_channels"])
    return dict(
        in_channels=unet_cfg["in_channels"], out_channels=unet_cfg["out_channels"],
        block_out_channels=tuple(unet_cfg["block_out_channels"]), layers_per_block=unet_cfg["layers_per_block"],
        down_block_types=tuple(t.replace("2D", "SpatioTemporal") for t in unet_cfg["down_block_types"]),
        up_block_types=tuple(t.replace("2D", "SpatioTemporal") for t in unet_cfg["up_block_types"]),
        cross_attention_dim=unet_cfg["cross_attention_dim"],
        num_attention_heads=tuple(heads) if isinstance(heads, (list, tuple)) else (heads,) * n,
    )


def motion_adapter(unet_cfg: dict[str, Any]) -> MotionAdapter:
    heads = unet_cfg.get("attention_head_dim", 8)
    return MotionAdapter(block_out_channels=tuple(unet_cfg["block_out_channels"]),
                         motion_layers_per_block=unet_cfg["layers_per_block"],
                         motion_num_attention_heads=heads if isinstance(heads, int) else tuple(heads),
                         motion_norm_num_groups=unet_cfg.get("norm_num_groups", 32))


def bench_config(name: str, unet_cfg: dict[str, Any], size: tuple[int, int], frames: int,
                 device: torch.device, dtype: torch.dtype, repeats: int) -> dict[str, Any]:
    h, w = size
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, frames, unet_cfg["in_channels"], h, w, generator=g).to(device, dtype)
    text = torch.randn(1, TOKENS, unet_cfg["cross_attention_dim"], generator=g).to(device, dtype)
    t = torch.tensor([500], device=device)
    rows: dict[str, Any] = {}
    text_frames = text.expand(frames, -1, -1)

    def image_unet() -> UNet2DConditionModel:
        torch.manual_seed(0)
        return UNet2DConditionModel(**unet_cfg).to(device, dtype).eval()

    def video() -> tuple[torch.nn.Module, Callable[[], Any]]:
        model = VideoUNet.from_image_unet(image_unet()).to(device, dtype).eval()
        cond = VideoCondition(text=text)
        return model, lambda: model(x, t, cond)

    def svd() -> tuple[torch.nn.Module, Callable[[], Any]]:
        model = UNetSpatioTemporalConditionModel(**svd_kwargs(unet_cfg)).to(device, dtype).eval()
        time_ids = torch.zeros(1, 3, device=device, dtype=dtype)
        return model, lambda: model(x, t, text, time_ids)

    def motion() -> tuple[torch.nn.Module, Callable[[], Any]]:
        model = UNetMotionModel.from_unet2d(image_unet(), motion_adapter(unet_cfg)).to(device, dtype).eval()
        # UNetMotionModel takes text already repeated per frame (as its AnimateDiff pipeline passes it).
        return model, lambda: model(x.permute(0, 2, 1, 3, 4), t, text_frames)

    def row(model: torch.nn.Module, seconds: float, flops: int) -> dict[str, Any]:
        return {"params": sum(p.numel() for p in model.parameters()), "seconds_per_frame": seconds / frames,
                "gflop_per_frame": flops / frames / 1e9, "achieved_gflops": flops / seconds / 1e9}

    def show(name: str) -> None:
        r = rows[name]
        print(f"  {name:8s} params {r['params'] / 1e6:8.2f}M  {r['gflop_per_frame']:8.2f} GFLOP/frame  "
              f"{r['seconds_per_frame']:.4f} s/frame  {r['achieved_gflops']:.1f} GFLOP/s  "
              f"x{r.get('over_plain_paired', 1.0):.3f} of plain (paired)", flush=True)

    # The plain UNet stays alive; every other model is built alone beside it and timed in alternation
    # with it, so load from other processes hits both alike (paired ratios), then freed.
    with torch.no_grad():
        plain = image_unet()
        plain_fn = lambda: plain(x[0], t.expand(frames), text_frames)  # noqa: E731
        plain_flops = count_flops(plain_fn)
        plain_times: list[float] = []
        for name, build in (("video", video), ("svd", svd), ("motion", motion)):
            model, fn = build()
            flops = count_flops(fn)
            # Warm both outside the flop counter (its dispatch mode is not the timed path), so neither
            # side of a pair pays first-call allocation or kernel-selection costs.
            fn()
            plain_fn()
            pairs = [(timed(plain_fn, device), timed(fn, device)) for _ in range(repeats)]
            plain_times += [p for p, _ in pairs]
            best_plain, best = min(p for p, _ in pairs), min(m for _, m in pairs)
            rows[name] = {**row(model, best, flops), "over_plain_paired": best / best_plain}
            del model, fn
            gc.collect()
            show(name)
        rows["plain"] = row(plain, min(plain_times), plain_flops)
        show("plain")

    paired = {m: r.get("over_plain_paired", 1.0) for m, r in rows.items()}
    best = {m: r["seconds_per_frame"] for m, r in rows.items()}
    ratios = {"video_over_plain_seconds": paired["video"],
              "video_over_svd_seconds": paired["video"] / paired["svd"],
              "video_over_plain_best_seconds": best["video"] / best["plain"],
              "video_over_svd_best_seconds": best["video"] / best["svd"],
              "video_over_plain_flops": rows["video"]["gflop_per_frame"] / rows["plain"]["gflop_per_frame"],
              "video_over_svd_flops": rows["video"]["gflop_per_frame"] / rows["svd"]["gflop_per_frame"]}
    print("  " + "  ".join(f"{k} {v:.3f}" for k, v in ratios.items()), flush=True)
    return {"latent_size": [h, w], "frames": frames, "text_tokens": TOKENS, "models": rows, "ratios": ratios,
            "targets": {"video_over_plain_seconds": 1.5, "video_over_svd_seconds": 0.75}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--configs", default="tiny,sd15", help="comma-separated conf/model names")
    parser.add_argument("--size", default="16x32",
                        help="latent HxW for the SD configs (16x32 = 128x256 frames; tiny uses its own)")
    parser.add_argument("--frames", type=int, default=8, help="frames in the one chunk")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed (plain, model) pairs per model (default 20 for micro/tiny, 5 otherwise)")
    parser.add_argument("--peak-n", type=int, default=2048, help="matmul size for the peak measurement")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (1 gives steadier ratios on a shared, loaded CPU)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    peaks = {"float32": matmul_peak(device, torch.float32, args.peak_n),
             "bfloat16": matmul_peak(device, torch.bfloat16, args.peak_n)}
    print(f"matmul peak on {device}: float32 {peaks['float32']:.0f} GFLOP/s, bf16 {peaks['bfloat16']:.0f} GFLOP/s")
    report: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "threads": torch.get_num_threads(), "dtype": args.dtype, "torch": torch.__version__,
        "load_average": list(os.getloadavg()), "matmul_peak_gflops": peaks, "configs": {},
    }
    size = tuple(int(v) for v in args.size.lower().split("x"))
    for name in args.configs.split(","):
        model_cfg = compose_command("train", [f"model={name}"]).model
        if model_cfg.unet is None:  # model.unet=null: the architecture comes from pretrained weights
            raise SystemExit(f"model={name}: the preset gives no model.unet fields; bench_unet builds random-weight "
                             "UNets from them (pick a preset that sets them)")
        unet_cfg = dict(model_cfg.unet)
        latent = tuple(model_cfg.latent_size) if name in ("micro", "tiny") else size
        print(f"{name} at {latent[0]}x{latent[1]} latents, {args.frames} frames, {args.dtype}:", flush=True)
        entry = bench_config(name, {k: (list(v) if hasattr(v, "__len__") and not isinstance(v, str) else v)
                                    for k, v in unet_cfg.items()},
                             latent, args.frames, device, dtype,
                             args.repeats or (20 if name in ("micro", "tiny") else 5))  # type: ignore[arg-type]
        report["configs"][name] = entry
    report["load_average_after"] = list(os.getloadavg())
    # The peak is measured again at the end and the higher kept: other processes share this CPU.
    for name, value in peaks.items():
        peaks[name] = max(value, matmul_peak(device, getattr(torch, name), args.peak_n))
    for entry in report["configs"].values():
        entry["fraction_of_peak"] = {m: r["achieved_gflops"] / peaks["float32" if args.dtype == "float32" else "bfloat16"]
                                     for m, r in entry["models"].items()}
    print(f"matmul peak (best of start/end): float32 {peaks['float32']:.0f} GFLOP/s, bf16 {peaks['bfloat16']:.0f} GFLOP/s")
    out = args.out or RESULTS / f"bench_unet_{device.type}_{args.dtype}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, out)
    print(f"saved {out}")


if __name__ == "__main__":
    main()
