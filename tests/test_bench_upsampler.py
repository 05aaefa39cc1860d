"""benchmarks/bench_upsampler.py: its memory accounting on known cases, and every part runs at micro size."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from train_fixtures import REPO

MICRO_VAE = {"in_channels": 3, "out_channels": 3, "latent_channels": 4, "block_out_channels": [8, 8, 16, 16],
             "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
             "layers_per_block": 1, "norm_num_groups": 4}


@pytest.fixture(scope="module")
def bench():  # type: ignore[no-untyped-def]
    torch.set_num_threads(1)
    spec = importlib.util.spec_from_file_location("bench_upsampler", REPO / "benchmarks" / "bench_upsampler.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_peak_live_counts_new_storage_once(bench, device: str) -> None:  # type: ignore[no-untyped-def]
    x = torch.zeros(1000, device=device)  # made outside: not counted
    n = 1000 * 4
    with bench.PeakLive() as mode:
        a = x * 2
        b = a * 2  # two live: 2n
        del a
        c = b + 1  # a freed first: still 2n
        b.add_(1)  # in place: no new storage
        view = c.view(10, 100)  # a view: no new storage
        assert mode.live == 2 * n
        del b, c, view
    assert mode.peak == 2 * n and mode.live == 0


def test_upsampler_unets_take_their_inputs(bench) -> None:  # type: ignore[no-untyped-def]
    latent, pixel = bench.upsampler_unet("micro").eval(), bench.upsampler_unet("micro", channels=3).eval()
    for unet, channels, size in ((latent, 4, (8, 16)), (pixel, 3, (32, 64))):
        x = torch.randn(1, 2, channels, *size)
        with torch.no_grad():
            assert unet(x, torch.tensor([10]), bench._cond(x, unet.cross_attention_dim)).shape == x.shape
        assert unet.condition_extra_in is not None and unet.condition_encoders.frame.noise_aug is not None


def test_saved_bytes_are_device_independent_and_checkpointing_saves(bench) -> None:  # type: ignore[no-untyped-def]
    figures = []
    for device in ("cpu", "meta"):
        unet = bench.upsampler_unet("micro", device=device)
        x = torch.randn(1, 2, 4, 8, 16, device=device)
        figures.append(bench.saved_bytes(unet, x, bench._cond(x, unet.cross_attention_dim)))
    assert figures[0] == figures[1]
    assert 0 < figures[0]["checkpointing_gib"] < figures[0]["no_checkpointing_gib"]


def test_estimate_counts_parameter_bytes_by_hand(bench) -> None:  # type: ignore[no-untyped-def]
    params = sum(p.numel() for p in bench.upsampler_unet("micro").parameters())  # built on the CPU, fp32
    step = bench.sd_estimate("micro", latent=(8, 16), frames=2, vae_config=MICRO_VAE, decode_frames=4)[
        "upsampler_train_step"]
    assert step["params"] == params
    parts = step["bytes"]
    assert (parts["weights_fp32"], parts["grads_fp32"], parts["adamw_moments_fp32"],
            parts["autocast_bf16_weight_copies"]) == (4 * params, 4 * params, 8 * params, 2 * params)


def test_estimate_matches_a_real_autocast_forward_on_the_cpu(bench) -> None:  # type: ignore[no-untyped-def]
    """Without checkpointing, what is alive after a real bf16-autocast forward (saved tensors, the cached bf16
    weight copies, the output) is what the meta-device estimate counts: activations + weight copies. Leaving
    the copies out (about a third here) or counting saved weights among the activations too fails this."""
    parts = bench.sd_estimate("micro", latent=(8, 16), frames=2, vae_config=MICRO_VAE, decode_frames=4)[
        "upsampler_train_step"]["bytes"]
    estimate = parts["activations_no_checkpointing"] + parts["autocast_bf16_weight_copies"]
    torch.manual_seed(0)
    unet = bench.upsampler_unet("micro").train()
    x = torch.randn(1, 2, 4, 8, 16)
    cond = bench._cond(x, unet.cross_attention_dim)
    with bench.PeakLive() as mode, torch.autocast("cpu", dtype=torch.bfloat16):
        out = unet(x, torch.tensor([500]), cond)
        live = mode.live
    del out
    assert 0.9 < live / estimate < 1.1, (live, estimate, parts)


def test_estimate_and_the_gpu_code_path_run_at_micro_size(bench) -> None:  # type: ignore[no-untyped-def]
    est = bench.sd_estimate("micro", latent=(8, 16), frames=2, vae_config=MICRO_VAE, decode_frames=4)
    step, dec = est["upsampler_train_step"], est["temporal_decoder_decode"]
    assert "ESTIMATE" in est["label"] and step["patch_pixels"] == [64, 128]
    assert step["total_checkpointing_gib"] <= step["total_no_checkpointing_gib"]
    assert 0 < step["bytes"]["activations_checkpointing"] < step["bytes"]["activations_no_checkpointing"]
    peaks = dec["peak_gib_by_decode_chunk"]
    assert peaks["chunk_4"] > dec["weights_gib"]  # decoding 4 frames at once costs more than its weights
    assert peaks["chunk_16"] == peaks["chunk_4"]  # 4 frames: every chunk size >= 4 decodes them in one go
    measured = bench.sd_measure("micro", latent=(8, 16), frames=2, vae_config=MICRO_VAE, decode_frames=4,
                                device="cpu")
    assert all(row["peak_gpu_gib"] is None for row in measured["rows"].values())
    assert measured["rows"]["train_step_checkpointing_True"]["step_s"] > 0
    assert measured["rows"]["train_step_checkpointing_False"]["patch_pixels"] == [64, 128]


def test_cpu_part_writes_its_figures(bench, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "up.json"
    bench.main(["--part", "tiny", "--model", "micro", "--batch", "1", "--frames", "2", "--repeats", "1", "--full-pixel-patch",
                "--out", str(out)])
    record = json.loads(out.read_text())["tiny"]
    steps = record["train_step"]
    # Each row says what it covers: the 16x32-latent patch and the 128x256-pixel one cover the same area.
    covers = {name: (row["input"], row["patch"], row["patch_pixels"]) for name, row in steps.items()}
    assert covers == {"latent_16x32_unet": ("latent", [16, 32], [128, 256]),
                      "latent_16x32_with_encoding": ("latent", [16, 32], [128, 256]),
                      "pixel_64x128": ("pixel", [64, 128], [64, 128]),
                      "pixel_128x256": ("pixel", [128, 256], [128, 256])}
    assert all(row["s"] > 0 and row["samples_per_s"] > 0 for row in steps.values())
