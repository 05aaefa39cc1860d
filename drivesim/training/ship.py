"""Ship trained stage exports as one cascade folder (the package data `drivesim/assets/demo_cascade`).

    python -m drivesim.training.ship outputs/recipe drivesim/assets/demo_cascade [--fp16] [--keep-from CASCADE]

SRC is an export, a run folder holding `export/`, or a folder of such runs (e.g. `outputs/recipe`);
the parents of every export found are followed through their markers, so the cascade is complete.
Each export is copied into `DEST/<stage>/` (the temporal stage as `prediction/`): only its marker,
configs and weights (`.json`, `.yaml`, `.safetensors` at its top level, plus the autoencoder's
`autoencoder/` folder); Lightning checkpoints, caches and anything else are left out and listed.
Every marker's parent links are rewritten to the copies (relative paths, digests recomputed).
`--fp16` stores float weights as float16 after measuring, on fixed inputs, the largest absolute
output difference of each UNet (eps units) and of the decoder ([-1, 1] pixels); a stage above its
tolerance stays float32. The figures go into `DEST/summary.json`. More than `--max-mb` (50 MB) in
all is refused. DEST is built beside itself and swapped in only when complete.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from drivesim.atomic import atomic_write_text
from drivesim.exports import AUTOENCODER_DIR, MARKER, Export, ExportError, folder_digest, read_export

log = logging.getLogger(__name__)

FORMAT = "drivesim-cascade"
MAX_MB = 50.0
STAGE_DIRS = {"autoencoder": "autoencoder", "image": "image", "temporal": "prediction", "interpolation": "interpolation"}
SHIPPED_SUFFIXES = (".json", ".yaml", ".safetensors")
UNET_TOLERANCE = 2e-2  # max |eps_fp16 - eps_fp32| of a UNet on unit-variance inputs
DECODER_TOLERANCE = 2 / 127.5  # two 8-bit levels of a decoded pixel in [-1, 1]


class ShipError(ValueError):
    """A cascade that cannot be shipped as asked (one line naming the file or limit)."""


@dataclass
class StageRecord:
    stage: str
    source: str
    source_sha256: str
    dtype: str = "float32"
    fp16_max_abs_diff: float | None = None
    files: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    sha256: str = ""
    bytes: int = 0


# ---------------------------------------------------------------------------------------------- finding
def _as_export(path: Path) -> Export | None:
    for candidate in (path, path / "export"):
        if (candidate / MARKER).is_file():
            return read_export(candidate)
    return None


def collect_exports(sources: list[Path]) -> dict[str, Export]:
    """{stage: Export} of the sources and, through their markers, all their parents."""
    found: list[Export] = []
    for src in sources:
        if not src.exists():
            raise ShipError(f"{src} does not exist")
        exp = _as_export(src)
        if exp is not None:
            found.append(exp)
            continue
        subs = [e for e in (_as_export(p) for p in sorted(src.iterdir()) if p.is_dir()) if e is not None]
        if not subs:
            raise ShipError(f"{src}: no export in it or its subfolders (no {MARKER})")
        found.extend(subs)
    by_stage: dict[str, Export] = {}
    queue = list(found)
    while queue:
        exp = queue.pop()
        have = by_stage.get(exp.stage)
        if have is not None:
            if have.path != exp.path:
                raise ShipError(f"two {exp.stage!r} exports: {have.path} and {exp.path} (ship one cascade at a time)")
            continue
        by_stage[exp.stage] = exp
        for role in exp.parents:
            parent = exp.parent(role)  # checks the recorded digest
            if parent is None:
                raise ShipError(f"{exp.path / MARKER}: parent {role!r} ({exp.parent_path(role)}) is not a drivesim "
                                "export: a shipped cascade must hold every stage it needs")
            queue.append(parent)
    return by_stage


# ---------------------------------------------------------------------------------------------- copying
def _copy_export(exp: Export, dest: Path, record: StageRecord) -> None:
    dest.mkdir(parents=True)
    for item in sorted(exp.path.iterdir()):
        name = item.name
        if item.is_file() and item.suffix in SHIPPED_SUFFIXES and not name.startswith("."):
            shutil.copy2(item, dest / name)
            record.files.append(name)
        elif item.is_dir() and name == AUTOENCODER_DIR and exp.stage == "autoencoder":
            for sub in sorted(item.iterdir()):
                if sub.is_file() and sub.suffix in SHIPPED_SUFFIXES:
                    (dest / name).mkdir(exist_ok=True)
                    shutil.copy2(sub, dest / name / sub.name)
                    record.files.append(f"{name}/{sub.name}")
                else:
                    record.left_out.append(f"{name}/{sub.name}")
        else:
            record.left_out.append(name + ("/" if item.is_dir() else ""))
    if record.left_out:
        log.info("%s: left out %s", exp.path, ", ".join(record.left_out))


def _weight_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.safetensors") if p.is_file())


def _to_fp16(folder: Path) -> None:
    for file in _weight_files(folder):
        tensors = load_file(str(file))
        if not any(v.dtype == torch.float32 for v in tensors.values()):
            continue
        halved = {k: v.half() if v.dtype == torch.float32 else v for k, v in tensors.items()}
        save_file(halved, str(file), metadata={"format": "pt"})


def _relink(exp: Export, copy: Path, copies: dict[Path, Path]) -> None:
    """Rewrite the copy's marker: parents point at their copies (relative), digests recomputed."""
    marker = json.loads((copy / MARKER).read_text())
    links = {}
    for role in exp.parents:
        source = exp.parent_path(role)
        assert source is not None
        target = copies[source.resolve()]
        links[role] = {"path": os.path.relpath(target, copy), "sha256": folder_digest(target)}
    marker["parents"] = links
    atomic_write_text(copy / MARKER, json.dumps(marker, indent=2) + "\n")


# ---------------------------------------------------------------------------------------------- measuring
def _fixed_condition(unet: Any, frames: int, latents: torch.Tensor, gen: torch.Generator) -> Any:
    from drivesim.pipelines.conditions import SceneInputs, Supports, frame_condition, with_context
    from drivesim.scenario.timeline import BoxRecord, FrameCondition

    supports = Supports.of(unet)
    box = BoxRecord("a", "car", 1, 1, (0.3, 0.4, 0.6, 0.8))
    records = [FrameCondition(i / 3.0, 8.0, 0.01, (box,)) for i in range(frames)]
    cond = frame_condition(records, supports, SceneInputs(labels=(0, 0, 1)))
    if supports.context and frames > 1:
        mask = torch.zeros(1, frames)
        mask[:, : min(2, frames - 1)] = 1.0
        context = torch.randn(latents.shape, generator=gen) * mask[..., None, None, None]
        cond = with_context(cond, context, mask, supports, 0.05)
    if supports.stage:
        cond.stage_id = torch.zeros(1, dtype=torch.long)
    return cond


@torch.no_grad()
def unet_difference(source: Export, shipped: Export) -> float:
    """max |out(shipped) - out(source)| of the two UNets (both run in float32) on fixed inputs."""
    a, b = source.build_unet().float(), shipped.build_unet().float()
    desc = source.read_json("model.json")
    h, w = (int(s) for s in desc["latent_size"])
    frames = 1 if source.stage == "image" else int(source.frames)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, frames, int(a.in_channels), h, w, generator=gen)
    cond = _fixed_condition(a, frames, x, gen)
    t = torch.tensor([500])
    return float((a(x, t, cond) - b(x, t, cond)).abs().max())


@torch.no_grad()
def decoder_difference(source: Export, shipped: Export) -> float:
    """max |decode(shipped) - decode(source)| in [-1, 1] pixels, on fixed latents."""
    a, b = source.load_vae().float(), shipped.load_vae().float()
    h, w = (int(s) // a.downscale for s in source.size)
    z = torch.randn(1, 2, a.latent_channels, h, w, generator=torch.Generator().manual_seed(0))
    return float((a.decode_video(z) - b.decode_video(z)).abs().max())


# ---------------------------------------------------------------------------------------------- shipping
def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _order(exports: dict[str, Export]) -> list[Export]:
    """Parents before children: the known chain first, then any other stage (e.g. decoder, upsampler)."""
    known = [exports[s] for s in STAGE_DIRS if s in exports]
    return known + [exports[s] for s in sorted(exports) if s not in STAGE_DIRS]


def ship(sources: list[Path], dest: Path, *, fp16: bool = False, max_mb: float = MAX_MB,
         unet_tolerance: float = UNET_TOLERANCE, decoder_tolerance: float = DECODER_TOLERANCE,
         keep_from: Path | None = None) -> dict[str, Any]:
    """Build the cascade folder `dest` from `sources`; returns its summary (also DEST/summary.json).
    `keep_from` (a shipped cascade, e.g. `dest` itself): its stages that the sources do not give are
    kept as shipped, provided their parents are byte-identical to the new copies (marker digests)."""
    exports = collect_exports(sources)
    if "temporal" not in exports:
        raise ShipError(f"{', '.join(map(str, sources))}: no temporal (prediction) export: nothing to generate with")
    dest = dest.resolve()
    if dest.exists() and not _is_cascade(dest):
        raise ShipError(f"{dest} exists and is not a shipped cascade (no {FORMAT} summary.json): not replacing it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        summary = _build(exports, tmp, fp16, max_mb, unet_tolerance, decoder_tolerance)
        if keep_from is not None:
            summary = _keep_stages(summary, tmp, keep_from.resolve(), max_mb)
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
            dest.rename(old / "cascade")
            tmp.rename(dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("shipped %s (%.2f MB): %s", dest, summary["total_bytes"] / 1e6, ", ".join(summary["stages"]))
    return summary


def _build(exports: dict[str, Export], tmp: Path, fp16: bool, max_mb: float, unet_tol: float,
           decoder_tol: float) -> dict[str, Any]:
    copies: dict[Path, Path] = {}
    records: dict[str, StageRecord] = {}
    for exp in _order(exports):
        name = STAGE_DIRS.get(exp.stage, exp.stage)
        copy = tmp / name
        record = StageRecord(exp.stage, str(exp.path), folder_digest(exp.path))
        _copy_export(exp, copy, record)
        _relink(exp, copy, copies)
        copies[exp.path.resolve()] = copy
        if fp16:
            _to_fp16(copy)
            shipped = read_export(copy)
            diff = decoder_difference(exp, shipped) if exp.stage == "autoencoder" else unet_difference(exp, shipped)
            tol = decoder_tol if exp.stage == "autoencoder" else unet_tol
            record.fp16_max_abs_diff = diff
            if diff <= tol:
                record.dtype = "float16"
            else:
                log.warning("%s: fp16 changes the output by up to %.3g (> %.3g): shipped as float32", name, diff, tol)
                for file in _weight_files(copy):
                    shutil.copy2(exp.path / file.relative_to(copy), file)
        summary_file = copy / "summary.json"
        if summary_file.is_file():
            data = json.loads(summary_file.read_text())
            data["shipped"] = {"source": str(exp.path), "dtype": record.dtype,
                               "fp16_max_abs_diff": record.fp16_max_abs_diff}
            atomic_write_text(summary_file, json.dumps(data, indent=2, default=str) + "\n")
        record.sha256 = folder_digest(copy)
        record.bytes = _folder_bytes(copy)
        records[name] = record
    total = _cascade_bytes(tmp, max_mb)
    summary = {"format": FORMAT, "version": 1, "total_bytes": total, "max_mb": max_mb, "fp16": fp16,
               "tolerances": {"unet_eps": unet_tol, "decoder_pixels": decoder_tol} if fp16 else None,
               "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
               "stages": {k: vars(v) for k, v in records.items()}}
    atomic_write_text(tmp / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _keep_stages(summary: dict[str, Any], tmp: Path, old: Path, max_mb: float) -> dict[str, Any]:
    """Copy the stages of the shipped cascade `old` that `summary` lacks into `tmp`, unchanged: their
    marker's parent digests must match the new copies (else the stage was made against other weights)."""
    if not _is_cascade(old):
        raise ShipError(f"--keep-from {old}: not a shipped cascade (no {FORMAT} summary.json)")
    previous = json.loads((old / "summary.json").read_text())["stages"]
    stages = dict(summary["stages"])
    for name, record in previous.items():
        if name in stages:
            continue
        shutil.copytree(old / name, tmp / name)
        kept = read_export(tmp / name)
        for role in kept.parents:
            try:
                kept.check_parent(role)
            except ExportError as exc:
                raise ShipError(f"--keep-from {old / name}: its {role} parent is not the one shipped now "
                                f"({' '.join(str(exc).split())}): retrain it or ship its source") from None
        if folder_digest(tmp / name) != record["sha256"]:
            raise ShipError(f"--keep-from {old / name}: its files differ from {old / 'summary.json'}")
        stages[name] = {**record, "kept_from": str(old)}
        log.info("%s: kept as shipped in %s", name, old)
    total = _cascade_bytes(tmp, max_mb)
    summary = {**summary, "stages": stages, "total_bytes": total}
    atomic_write_text(tmp / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _cascade_bytes(folder: Path, max_mb: float) -> int:
    """The stages' bytes (summary.json not counted), refused above `max_mb`."""
    summary = folder / "summary.json"
    total = _folder_bytes(folder) - (summary.stat().st_size if summary.is_file() else 0)
    if total > max_mb * 1e6:
        raise ShipError(f"the cascade would take {total / 1e6:.1f} MB, more than the {max_mb:g} MB allowed "
                        "(try --fp16, or a smaller model)")
    return total


def _is_cascade(folder: Path) -> bool:
    try:
        return json.loads((folder / "summary.json").read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drivesim.training.ship", description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="+", type=Path, help="exports, run folders or folders of runs")
    parser.add_argument("dest", type=Path, help="the cascade folder to write (e.g. drivesim/assets/demo_cascade)")
    parser.add_argument("--fp16", action="store_true", help="store float weights as float16 where measured harmless")
    parser.add_argument("--max-mb", type=float, default=MAX_MB)
    parser.add_argument("--keep-from", type=Path, default=None,
                        help="a shipped cascade whose other stages are kept as they are (parents must match)")
    parser.add_argument("--unet-tolerance", type=float, default=UNET_TOLERANCE)
    parser.add_argument("--decoder-tolerance", type=float, default=DECODER_TOLERANCE)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        summary = ship(args.sources, args.dest, fp16=args.fp16, max_mb=args.max_mb,
                       unet_tolerance=args.unet_tolerance, decoder_tolerance=args.decoder_tolerance,
                       keep_from=args.keep_from)
    except (ShipError, ExportError) as exc:
        sys.stderr.write(f"ship: {' '.join(str(exc).split())}\n")
        return 2
    for name, rec in summary["stages"].items():
        diff = rec["fp16_max_abs_diff"]
        sys.stdout.write(f"{name}: {rec['dtype']}, {rec['bytes'] / 1e6:.2f} MB"
                         + (f", fp16 max abs diff {diff:.3g}" if diff is not None else "") + "\n")
    sys.stdout.write(f"{args.dest}: {summary['total_bytes'] / 1e6:.2f} MB in all\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
