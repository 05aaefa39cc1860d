"""SD-size temporal-stage step: memory and time, measured on a GPU or estimated from CPU.

With CUDA: peak GPU memory and step time of a temporal-stage step (16 frames, bf16 autocast,
gradient checkpointing, AdamW over the temporal + condition groups) at 16x32 and 64x128 latents
(128x256 and 512x1024 frames). Without CUDA: the same step on CPU at three small latent sizes, each in
its own process; activation memory (peak RSS after the step minus RSS before it, less the gradients)
is fitted as a + b * latent pixels and extrapolated to 64x128, with weights, gradients and AdamW
states added. The result is labelled an estimate: it assumes memory-efficient attention (linear in
tokens, as SDPA's flash/efficient kernels on GPU are) and halves fp32 activations for bf16.

    python benchmarks/bench_train_sd.py                      # CPU estimate
    python benchmarks/bench_train_sd.py --device cuda        # measured, on a lent GPU
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def peak_rss_mb() -> float:
    """This process's resident high-water mark (VmHWM). Not ru_maxrss: Linux carries that across
    exec from the forking parent, so a child would report its parent's peak."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024
    return float("nan")
FRAMES = 16
TOKENS = 77


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return float(line.split()[1]) / 1024
    return float("nan")


def step(size: tuple[int, int], device: str, checkpointing: bool) -> dict:
    import torch

    from drivesim.config import compose_command
    from drivesim.models import VideoCondition, build_video_unet

    cfg = compose_command("train", ["model=sd15"]).model
    unet = build_video_unet(cfg).to(device)
    unet.freeze_spatial()
    unet.enable_gradient_checkpointing(checkpointing)
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    trainable = sum(p.numel() for p in params)
    total = sum(p.numel() for p in unet.parameters())
    h, w = size
    x = torch.randn(1, FRAMES, 4, h, w, device=device)
    text = torch.randn(1, TOKENS, 768, device=device)
    cond = VideoCondition(text=text)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    before = _rss_mb()
    start = time.perf_counter()
    with torch.autocast(device, dtype=dtype, enabled=device == "cuda"):
        loss = unet(x, torch.tensor([500], device=device), cond).float().pow(2).mean()
    loss.backward()
    optimizer.step()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    row = {"latent": [h, w], "frames": FRAMES, "checkpointing": checkpointing, "step_s": round(seconds, 2),
           "params_total": total, "params_trainable": trainable}
    if device == "cuda":
        row["peak_gpu_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    else:
        peak = peak_rss_mb()
        optimizer_mb = trainable * 4 * 3 / 2**20  # grads + two AdamW moments, fp32
        row["activation_mb_fp32"] = round(max(0.0, peak - before - optimizer_mb), 1)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--one", nargs=3, metavar=("H", "W", "CKPT"))
    args = parser.parse_args()
    if args.one:
        print(json.dumps(step((int(args.one[0]), int(args.one[1])), args.device, args.one[2] == "1")))
        return
    sizes = [(16, 32), (64, 128)] if args.device == "cuda" else [(4, 8), (8, 16), (16, 32)]
    rows = []
    for ckpt in (True, False):
        for h, w in sizes:
            out = subprocess.run([sys.executable, __file__, "--device", args.device, "--one", str(h), str(w),
                                  str(int(ckpt))], capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(rows[-1])
    record: dict = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "device": args.device,
                    "rows": rows}
    if args.device != "cuda":
        record["estimate"] = estimate(rows)
        print(json.dumps(record["estimate"], indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"bench_train_sd_{args.device}.json").write_text(json.dumps(record, indent=2) + "\n")


def estimate(rows: list[dict]) -> dict:
    """Least-squares a + b * pixels per checkpointing mode, extrapolated to 64x128 in bf16."""
    out: dict = {"label": "ESTIMATE from CPU activation memory (not measured on a GPU)", "target_latent": [64, 128]}
    for ckpt in (True, False):
        pts = [(r["latent"][0] * r["latent"][1], r["activation_mb_fp32"]) for r in rows if r["checkpointing"] == ckpt]
        n = len(pts)
        mx, my = sum(p for p, _ in pts) / n, sum(m for _, m in pts) / n
        b = sum((p - mx) * (m - my) for p, m in pts) / max(1e-9, sum((p - mx) ** 2 for p, _ in pts))
        a = my - b * mx
        act_gb = (a + b * 64 * 128) / 1024 / 2  # bf16 halves the fp32 activations
        total, trainable = rows[0]["params_total"], rows[0]["params_trainable"]
        state_gb = (total * 4 + trainable * 4 * 3) / 2**30  # fp32 master weights, grads + AdamW moments
        out["checkpointing" if ckpt else "no_checkpointing"] = {
            "activation_gb_bf16": round(act_gb, 1), "weights_and_optimizer_gb": round(state_gb, 1),
            "total_gb": round(act_gb + state_gb, 1), "fits_80gb": act_gb + state_gb < 80}
    return out


if __name__ == "__main__":
    main()
