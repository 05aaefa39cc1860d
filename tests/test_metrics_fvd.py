"""FVD: StyleGAN-V's I3D calling convention with a tiny scripted detector, missing and foreign files,
and state sync across 2 processes (gloo)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from metrics_fixtures import TinyI3D, save_scripted

from drivesim.metrics import FVD, MissingExtractorError


def videos(n: int, seed: int, t: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, t, 3, 16, 24), dtype=torch.uint8, generator=g)


@pytest.fixture(scope="module")
def i3d(tmp_path_factory) -> Path:
    return save_scripted(TinyI3D(), tmp_path_factory.mktemp("fvd") / "i3d_torchscript.pt")


def reference(path: Path, real: torch.Tensor, fake: torch.Tensor) -> float:
    module = torch.jit.load(str(path))

    def feats(v):
        x = v.float().permute(0, 2, 1, 3, 4)
        return module(x, rescale=True, resize=True, return_features=True).double().numpy()

    a, b = feats(real), feats(fake)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real))


def test_tiny_i3d_end_to_end(i3d: Path) -> None:
    real, fake = videos(9, 0), videos(7, 1) // 2 + 60  # a darker, flatter set: a clearly non-zero distance
    metric = FVD(i3d, batch_size=4)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    assert float(metric.compute()) == pytest.approx(reference(i3d, real, fake), rel=1e-5)
    assert metric.protocol()["call"] == "detector(x, rescale=True, resize=True, return_features=True)"
    with pytest.raises(ValueError, match=r"\(N, T, 3, H, W\)"):
        metric.update(real[0], real=True)


def test_missing_i3d_is_one_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("DRIVESIM_I3D", raising=False)
    with pytest.raises(MissingExtractorError) as err:
        FVD()
    assert "i3d_torchscript.pt" in str(err.value) and "DRIVESIM_I3D" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(MissingExtractorError, match="nope.pt does not exist"):
        FVD(tmp_path / "nope.pt")


def test_a_file_with_another_hash_is_used_with_a_warning(i3d: Path, monkeypatch, caplog) -> None:
    from drivesim.metrics import extractors

    monkeypatch.setattr(extractors, "I3D_SHA256", "0" * 64)
    with caplog.at_level(logging.WARNING):
        metric = FVD(i3d)
    assert "not the expected" in caplog.text
    assert metric.file.record()["sha256"] == extractors.sha256_file(i3d) and not metric.file.verified


WORKER = textwrap.dedent("""
    import sys, torch, torch.distributed as dist
    from drivesim.metrics import FVD
    rank, store, i3d, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    g = torch.Generator().manual_seed(0)
    real = torch.randint(0, 256, (10, 6, 3, 16, 24), dtype=torch.uint8, generator=g)
    fake = torch.randint(0, 256, (8, 6, 3, 16, 24), dtype=torch.uint8, generator=g)
    m = FVD(i3d)
    m.update(real[rank::2], real=True)
    m.update(fake[rank::2], real=False)
    value = float(m.compute())
    if rank == 0:
        open(out, "w").write(repr(value))
    dist.destroy_process_group()
""")


def test_state_syncs_across_two_processes(i3d: Path, tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out = tmp_path / "value.txt"
    procs = [subprocess.Popen([sys.executable, str(script), str(r), str(tmp_path / "store"), str(i3d), str(out)], env=env)
             for r in range(2)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    g = torch.Generator().manual_seed(0)
    real = torch.randint(0, 256, (10, 6, 3, 16, 24), dtype=torch.uint8, generator=g)
    fake = torch.randint(0, 256, (8, 6, 3, 16, 24), dtype=torch.uint8, generator=g)
    single = FVD(i3d)
    single.update(real, real=True)
    single.update(fake, real=False)
    assert float(out.read_text()) == pytest.approx(float(single.compute()), rel=1e-9)
