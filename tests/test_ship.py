"""Shipping a cascade (drivesim.training.ship): copies, relinked markers, fp16 measured, limits, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from generate_fixtures import write_micro_exports
from safetensors.torch import load_file

from drivesim.exports import MARKER, find_cascade, folder_digest, read_export
from drivesim.training.ship import ShipError, main, ship


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("runs")
    paths = write_micro_exports(root / "exports", interpolation=True)
    # What a training run leaves beside and inside an export, none of which may ship.
    (paths["temporal"] / "last.ckpt").write_bytes(b"lightning checkpoint")
    (paths["temporal"] / "latents").mkdir()
    (paths["temporal"] / "latents" / "cache.safetensors").write_bytes(b"x")
    (paths["image"] / "summary.json").write_text(json.dumps({"steps": 4}))
    return root / "exports"


def test_ship_copies_relinks_and_reads_back(runs: Path, tmp_path: Path) -> None:
    dest = tmp_path / "assets" / "cascade"
    summary = ship([runs / "temporal", runs / "interpolation"], dest)  # parents are followed
    assert sorted(p.name for p in dest.iterdir()) == ["autoencoder", "image", "interpolation", "prediction",
                                                       "summary.json"]
    stages = find_cascade(dest)
    assert set(stages) == {"autoencoder", "image", "temporal", "interpolation"}
    pred = stages["temporal"]
    marker = json.loads((dest / "prediction" / MARKER).read_text())
    assert marker["parents"]["image"]["path"] == "../image"
    assert marker["parents"]["image"]["sha256"] == folder_digest(dest / "image")
    assert pred.parent("image").path == (dest / "image").resolve()  # type: ignore[union-attr]
    assert pred.autoencoder_path() == (dest / "autoencoder" / "autoencoder").resolve()
    # Never checkpoints or caches; what was left out is listed.
    assert not list(dest.rglob("*.ckpt")) and not (dest / "prediction" / "latents").exists()
    assert set(summary["stages"]["prediction"]["left_out"]) == {"last.ckpt", "latents/"}
    assert json.loads((dest / "image" / "summary.json").read_text())["shipped"]["dtype"] == "float32"
    # Weights are byte-identical copies without --fp16 (the prediction source also held a cache).
    assert summary["stages"]["image"]["source_sha256"] == summary["stages"]["image"]["sha256"]
    assert summary["stages"]["prediction"]["source_sha256"] != summary["stages"]["prediction"]["sha256"]
    # The copy stands alone: moving the sources away keeps it loadable.
    moved = tmp_path / "moved"
    dest.rename(moved)
    assert read_export(moved / "prediction").parent("autoencoder") is not None


def test_fp16_is_measured_and_recorded(runs: Path, tmp_path: Path) -> None:
    dest = tmp_path / "cascade16"
    summary = ship([runs], dest, fp16=True)
    for name, rec in summary["stages"].items():
        assert rec["fp16_max_abs_diff"] is not None and rec["fp16_max_abs_diff"] >= 0, name
    # micro with random weights: the UNets move by more than the default tolerance or not; either way
    # the dtype on disk matches the record.
    for name, rec in summary["stages"].items():
        dtypes = {v.dtype for f in (dest / name).rglob("*.safetensors") for v in load_file(str(f)).values()
                  if v.is_floating_point()}
        assert dtypes == {torch.float16 if rec["dtype"] == "float16" else torch.float32}, name
    assert json.loads((dest / "summary.json").read_text())["stages"] == summary["stages"]
    loose = ship([runs], tmp_path / "loose", fp16=True, unet_tolerance=1e9, decoder_tolerance=1e9)
    assert all(r["dtype"] == "float16" for r in loose["stages"].values())
    plain = ship([runs], tmp_path / "plain")
    assert loose["total_bytes"] < 0.6 * plain["total_bytes"]  # weights dominate and halve
    strict = ship([runs], tmp_path / "strict", fp16=True, unet_tolerance=0.0, decoder_tolerance=0.0)
    assert all(r["dtype"] == "float32" or r["fp16_max_abs_diff"] == 0.0 for r in strict["stages"].values())
    # fp16 weights load into float32 models and generate-side loading works.
    assert read_export(tmp_path / "loose" / "prediction").build_unet().dtype == torch.float32


def test_one_stage_is_replaced_and_the_others_kept_only_when_their_parents_match(runs: Path, tmp_path: Path) -> None:
    dest = tmp_path / "cascade"
    first = ship([runs / "temporal", runs / "interpolation"], dest)
    kept = dest / "interpolation"
    before = folder_digest(kept)
    # A new prediction export (here the same one) with the interpolation stage kept as shipped.
    summary = ship([runs / "temporal"], dest, keep_from=dest)
    assert set(find_cascade(dest)) == {"autoencoder", "image", "temporal", "interpolation"}
    assert folder_digest(dest / "interpolation") == before
    assert summary["stages"]["interpolation"]["kept_from"] == str(dest.resolve())
    assert summary["stages"]["image"]["sha256"] == first["stages"]["image"]["sha256"]
    read_export(dest / "interpolation").check_parent("image")
    # fp16 changes the image copy: the kept interpolation was made against other weights, and dest stays.
    with pytest.raises(ShipError, match=r"interpolation: its (autoencoder|image) parent"):
        ship([runs / "temporal"], dest, fp16=True, keep_from=dest)
    assert folder_digest(dest / "interpolation") == before and (dest / "interpolation").is_dir()
    assert not list(tmp_path.glob(".cascade.partial-*"))


def test_refuses_over_the_size_limit_and_foreign_folders(runs: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ShipError, match="more than the 0.001 MB"):
        ship([runs], tmp_path / "big", max_mb=0.001)
    assert not (tmp_path / "big").exists() and not list(tmp_path.glob(".big*"))
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    assert main([str(runs), str(foreign)]) == 2
    assert "not a shipped cascade" in capsys.readouterr().err and (foreign / "notes.txt").is_file()
    assert main([str(runs / "image"), str(tmp_path / "x")]) == 2  # no prediction export to ship
    assert "no temporal" in capsys.readouterr().err
    # Shipping again replaces a shipped cascade.
    assert main([str(runs), str(tmp_path / "again")]) == 0
    assert main([str(runs), str(tmp_path / "again")]) == 0
    assert "MB in all" in capsys.readouterr().out


def test_an_installed_package_finds_its_own_conf_and_assets(tmp_path: Path) -> None:
    """The layout a non-editable install makes: drivesim/conf (setup.py's build hook) and drivesim/assets,
    no checkout around them."""
    import shutil
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    site = tmp_path / "site"
    shutil.copytree(repo / "drivesim", site / "drivesim", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(repo / "conf", site / "drivesim" / "conf")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "HOME": str(tmp_path), "OMP_NUM_THREADS": "1"}
    code = ("from drivesim.config.compose import CONF_DIR; from drivesim.demo import packaged_cascade; "
            "print(CONF_DIR); print(packaged_cascade())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=120, check=True).stdout.split()
    assert out == [str(site / "drivesim" / "conf"), str(site / "drivesim" / "assets" / "demo_cascade")]
    shown = subprocess.run([sys.executable, "-m", "drivesim", "demo", "--cfg"], capture_output=True, text=True,
                           env=env, cwd=tmp_path, timeout=120)
    assert shown.returncode == 0 and "interpolation_sampler:" in shown.stdout, shown.stderr


@pytest.mark.slow
def test_wheel_holds_conf_and_assets(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys
    import zipfile

    repo = Path(__file__).resolve().parents[1]
    src = tmp_path / "src"  # a copy: the build writes build/ and *.egg-info beside the sources
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy2(repo / name, src / name)
    for name in ("drivesim", "conf"):
        shutil.copytree(repo / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-build-isolation", "--no-deps", "-q",
                    "-w", str(tmp_path / "wheel")], check=True, timeout=600, cwd=tmp_path)
    names = zipfile.ZipFile(next((tmp_path / "wheel").glob("drivesim-*.whl"))).namelist()
    assert "drivesim/conf/demo.yaml" in names and "drivesim/conf/protocol/synth-bench-v1.yaml" in names
    assert "drivesim/assets/README.md" in names
    shipped = [n for n in names if n.startswith("drivesim/assets/demo_cascade/")]
    if (src / "drivesim" / "assets" / "demo_cascade").is_dir():
        assert any(n.endswith("prediction/drivesim_export.json") for n in shipped)
    assert not any(n.endswith(".ckpt") for n in names)


def test_a_stage_trained_on_the_source_autoencoder_fits_the_fp16_cascade(runs: Path, tmp_path: Path) -> None:
    """An upsampler / decoder / LoRA trained on the recipe's autoencoder must combine with the shipped
    cascade, whose autoencoder is an fp16 copy of it (other bytes): the cascade's summary names the source."""
    from drivesim.pipelines.cascade_stages import CascadeStageError, check_same_autoencoder

    dest = tmp_path / "fp16"
    ship([runs], dest, fp16=True)
    shipped = read_export(dest / "prediction")
    source = read_export(runs / "interpolation")  # trained on the source autoencoder
    assert folder_digest(source.autoencoder_path()) != folder_digest(shipped.autoencoder_path())
    check_same_autoencoder(source, shipped, "upsampler")
    summary = json.loads((dest / "summary.json").read_text())
    summary["stages"]["autoencoder"]["source_sha256"] = "0" * 64  # another source
    (dest / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(CascadeStageError, match="trained with the autoencoder"):
        check_same_autoencoder(source, shipped, "upsampler")
