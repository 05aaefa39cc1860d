"""SD-size temporal-stage step (16 frames): GPU memory and time, measured on a GPU or estimated.

With CUDA (`--device cuda`): peak GPU memory and step time of a temporal-stage step (bf16 autocast,
AdamW over the trainable groups, with and without gradient checkpointing) at 16x32 and 64x128
latents (128x256 and 512x1024 frames).

Without CUDA: an ESTIMATE by exact shape accounting. The model is built on the meta device in bf16,
a forward pass runs on meta tensors, and every tensor saved for backward is counted (autograd's
saved-tensor hooks), per checkpointed layer and in all. Attention is counted two ways: as a
flash / memory-efficient SDPA kernel keeps it (q, k, v, out) and as the math path does (the full
attention matrix). Weights (fp32 master copies, as Lightning's bf16-mixed keeps them), gradients
and AdamW moments of the trainable groups are added. Allocator overhead and fragmentation are not.

    python benchmarks/bench_train_sd.py                   # estimate (CPU, seconds)
    python benchmarks/bench_train_sd.py --device cuda     # measured, on a lent GPU
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from drivesim.config import compose_command
from drivesim.models import VideoCondition, build_video_unet

RESULTS = Path(__file__).resolve().parent / "results"
FRAMES, TOKENS, GIB = 16, 77, 2**30
SIZES = [(16, 32), (64, 128)]


def _model(device: str) -> Any:
    cfg = compose_command("train", ["model=sd15"]).model
    with torch.device(device):
        unet = build_video_unet(cfg)
    unet.freeze_spatial()
    return unet


def _inputs(h: int, w: int, device: str, dtype: torch.dtype) -> tuple[torch.Tensor, VideoCondition]:
    x = torch.randn(1, FRAMES, 4, h, w, device=device, dtype=dtype)
    return x, VideoCondition(text=torch.randn(1, TOKENS, 768, device=device, dtype=dtype))


class _KeptBySdpaKernel(torch.autograd.Function):
    """What a flash / memory-efficient SDPA kernel keeps for backward: q, k, v and the output."""

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(q, k, v, out)
        return out.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, None, None, torch.Tensor]:
        return None, None, None, grad


def _saved_bytes(unet: Any, h: int, w: int) -> dict[str, float]:
    """Bytes saved for backward, in all and per checkpointed layer (meta tensors: shapes only)."""
    inputs: list[int] = []
    per_layer: list[int] = []
    total: dict[int, int] = {}

    def run(step: Callable[..., torch.Tensor], *args: Any) -> torch.Tensor:
        inputs.append(sum(a.numel() * a.element_size() for a in args if isinstance(a, torch.Tensor)))
        seen: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            seen[id(t)] = total[id(t)] = t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = step(*args)
        per_layer.append(sum(seen.values()))
        return out

    unet._run = run
    x, cond = _inputs(h, w, "meta", torch.bfloat16)
    unet(x, torch.tensor([500], device="meta"), cond)
    del unet._run
    return {"no_checkpointing_gib": sum(total.values()) / GIB,
            "checkpointing_gib": (sum(inputs) + max(per_layer)) / GIB, "layers": len(inputs)}


def estimate() -> dict[str, Any]:
    unet = _model("meta").to(torch.bfloat16)
    total = sum(p.numel() for p in unet.parameters())
    trainable = sum(p.numel() for p in unet.parameters() if p.requires_grad)
    state = (total * 4 + trainable * 4 * 3) / GIB  # fp32 masters; fp32 grads + 2 AdamW moments (trainable)
    out: dict[str, Any] = {"label": "ESTIMATE by exact shape accounting on the meta device (not measured on a GPU)",
                           "frames": FRAMES, "params_total": total, "params_trainable": trainable,
                           "weights_grads_adamw_gib": round(state, 2), "sizes": {}}
    real_sdpa = F.scaled_dot_product_attention
    for attention in ("flash", "math"):
        if attention == "flash":
            def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *a: Any, **kw: Any) -> torch.Tensor:
                with torch.no_grad():
                    result = real_sdpa(q, k, v, *a, **kw)
                return _KeptBySdpaKernel.apply(q, k, v, result)

            F.scaled_dot_product_attention = sdpa
        else:
            F.scaled_dot_product_attention = real_sdpa
        for h, w in SIZES:
            act = _saved_bytes(unet, h, w)
            key = f"{h}x{w}_{attention}_attention"
            out["sizes"][key] = {k: round(v, 2) for k, v in act.items()} | {
                "total_checkpointing_gib": round(state + act["checkpointing_gib"], 1),
                "total_no_checkpointing_gib": round(state + act["no_checkpointing_gib"], 1),
                "fits_80gb_checkpointing": state + act["checkpointing_gib"] < 80 / 1.074}
    F.scaled_dot_product_attention = real_sdpa
    return out


def measure() -> list[dict[str, Any]]:
    rows = []
    for checkpointing in (True, False):
        for h, w in SIZES:
            unet = _model("cuda")
            unet.enable_gradient_checkpointing(checkpointing)
            optimizer = torch.optim.AdamW([p for p in unet.parameters() if p.requires_grad], lr=1e-5)
            x, cond = _inputs(h, w, "cuda", torch.float32)
            torch.cuda.reset_peak_memory_stats()
            times = []
            for _ in range(3):
                torch.cuda.synchronize()
                start = time.perf_counter()
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    loss = unet(x, torch.tensor([500], device="cuda"), cond).float().pow(2).mean()
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
            rows.append({"latent": [h, w], "frames": FRAMES, "checkpointing": checkpointing,
                         "step_s": round(min(times[1:]), 3), "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / GIB, 2)})
            print(rows[-1])
            del unet, optimizer
            torch.cuda.empty_cache()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    record: dict[str, Any] = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "device": args.device}
    if args.device == "cuda":
        record["rows"] = measure()
    else:
        record["estimate"] = estimate()
        print(json.dumps(record["estimate"], indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"bench_train_sd_{args.device}.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
