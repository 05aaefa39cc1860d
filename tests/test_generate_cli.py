"""`drivesim generate` on micro exports: outputs, one-line errors with nothing written, exact resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import yaml
from generate_fixtures import write_micro_exports

from drivesim.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cascade(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(1)
    return write_micro_exports(tmp_path_factory.mktemp("exports"), interpolation=True)


def _args(cascade: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["generate", f"checkpoint={cascade['temporal']}", f"out={out}", "seed=3", "seconds=2",
            "sampler.steps=2", *extra]


def _decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])]


def test_generate_writes_the_outputs_and_prints_their_paths(cascade: dict[str, Path], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(_args(cascade, out, f"interpolation={cascade['interpolation']}", "sampler=euler",
                      "sampler.guidance.boxes=2")) == 0
    printed = capsys.readouterr().out.split()
    assert [Path(p).name for p in printed] == ["video.mp4", "overlay.mp4", "contact_sheet.png", "conditions.jsonl",
                                               "run.json"]
    assert len(_decoded(out / "video.mp4")) == 24 == len(_decoded(out / "overlay.mp4"))  # 2 s x 12 fps
    run = json.loads((out / "run.json").read_text())
    assert run["fps"] == 12.0 and run["config"]["sampler"]["name"] == "euler" and run["seed"] == 3
    assert "interpolation" in run["stage_seconds"]
    assert run["torch_threads"] == torch.get_num_threads()  # CPU results depend on it: a rerun needs the same
    assert run["precision"] == "fp32" == run["config"]["precision"]  # generate's default; `auto` is resolved here


def test_auto_precision_is_resolved_in_the_resume_settings(cascade: dict[str, Path], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A rollout keeps the precision `auto` resolved to: resumed where `auto` means another precision, it is
    refused (one line), never continued in a mix of the two."""
    from drivesim.pipelines import loading

    out = tmp_path / "auto"
    monkeypatch.setattr(loading, "native_bf16", lambda device: False)
    assert main(_args(cascade, out, "precision=auto", "seconds=1")) == 0
    assert json.loads((out / ".rollout" / "config.json").read_text())["precision"] == "fp32"
    assert json.loads((out / "run.json").read_text())["precision"] == "fp32"
    monkeypatch.setattr(loading, "native_bf16", lambda device: True)
    capsys.readouterr()
    assert main(_args(cascade, out, "precision=auto", "seconds=1")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "precision" in err


def test_prediction_window_is_used_and_recorded(cascade: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "window"
    assert main(_args(cascade, out, "prediction_window=3", "seconds=1")) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["prediction_window"] == 3 and run["config"]["prediction_window"] == 3
    assert len(_decoded(out / "video.mp4")) == 3  # 1 s at the micro export's 3 fps


def test_cascade_folder_and_several_seeds(cascade: dict[str, Path], tmp_path: Path) -> None:
    args = _args(cascade, tmp_path / "multi", "seeds=[1,2]", "seconds=1")
    args[1] = f"checkpoint={cascade['temporal'].parent}"
    assert main(args) == 0
    for seed in (1, 2):
        frames = (tmp_path / "multi" / f"seed_{seed}" / "conditions.jsonl").read_text().splitlines()
        assert len(frames) == 12  # the cascade's interpolation export is used: 1 s x 12 fps


def _scenario_file(tmp_path: Path, **changes: object) -> Path:
    data = {"name": "t", "agents": [{"id": "a", "class": "car", "size": [4, 2, 1.5], "track": [[0, 15, 0, 0]]}]}
    data.update(changes)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (lambda c, t: [f"scenario.path={_scenario_file(t, labels={'weather': 'snow'})}"], "labels.weather"),
        (lambda c, t: [f"scenario.path={t / 'missing.yaml'}"], "missing.yaml"),
        (lambda c, t: [f"checkpoint={c['image']}"], "temporal"),
        (lambda c, t: ["sampler.name=heun"], "sampler.name"),
        (lambda c, t: ["sampler.guidance_mode=stacked"], "guidance_mode"),
        (lambda c, t: [f"interpolation={c['image']}"], "interpolation"),
        (lambda c, t: ["prediction_window=9"], "prediction_window"),  # longer than the export's 4 frames
        (lambda c, t: ["prediction_window=2"], "prediction_window"),  # no frame left after 2 context keys
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(cascade: dict[str, Path], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str], extra, named) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "never"
    assert main(_args(cascade, out) + extra(cascade, tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err
    assert not out.exists()


def test_a_bug_while_preparing_keeps_its_traceback(cascade: dict[str, Path], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the errors bad input causes become one line and exit 2; a plain ValueError is a bug."""
    from drivesim.pipelines import run

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("a bug, not bad input")

    monkeypatch.setattr(run, "load_cascade", broken)
    with pytest.raises(ValueError, match="a bug"):
        main(_args(cascade, tmp_path / "never"))


def test_out_holding_another_run_is_refused_unless_resume_false(cascade: dict[str, Path], tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(_args(cascade, out, "seconds=1")) == 0
    capsys.readouterr()
    assert main(_args(cascade, out, "seconds=1", "sampler.steps=3", "sampler=euler")) == 2
    err = capsys.readouterr().err
    assert "sampler.steps" in err and "sampler.name" in err and len(err.strip().splitlines()) == 1
    assert main(_args(cascade, out, "seconds=1", "sampler.steps=3", "resume=false")) == 0
    assert json.loads((out / "run.json").read_text())["config"]["sampler"]["steps"] == 3


_KILLER = """
import os, signal, sys
from drivesim.pipelines import store, writers
mode, after = sys.argv[1], int(sys.argv[2])
if mode == "state":  # SIGKILL after chunk `after`'s segment is written, before its state is saved
    save = store.RolloutStore.save_state
    def save_state(self, state):
        if state.next_chunk == after + 1:
            os.kill(os.getpid(), signal.SIGKILL)
        save(self, state)
    store.RolloutStore.save_state = save_state
else:  # SIGKILL while video.mp4 is being encoded
    write = writers.Mp4Writer.write
    def write_frame(self, frame):
        if self.frames == after:
            os.kill(os.getpid(), signal.SIGKILL)
        write(self, frame)
    writers.Mp4Writer.write = write_frame
from drivesim.cli import main
sys.exit(main(sys.argv[3:]))
"""


def _run(args: list[str], *prefix: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", _KILLER, *prefix, *args] if prefix else [sys.executable, "-m", "drivesim", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=170)


def test_resume_after_sigkill_equals_the_uninterrupted_run(cascade: dict[str, Path], tmp_path: Path) -> None:
    interp = f"interpolation={cascade['interpolation']}"
    reference = tmp_path / "reference"
    assert main(_args(cascade, reference, interp)) == 0
    expected = _decoded(reference / "video.mp4")

    out = tmp_path / "killed"
    killed = _run(_args(cascade, out, interp), "state", "2")
    assert killed.returncode == -signal.SIGKILL
    assert (out / ".rollout" / "segment_000002.npz").exists() and not (out / "video.mp4").exists()
    first_segment = (out / ".rollout" / "segment_000000.npz").stat().st_mtime_ns
    killed = _run(_args(cascade, out, interp), "video", "5")  # resumes, then dies while encoding
    assert killed.returncode == -signal.SIGKILL and not (out / "video.mp4").exists()
    done = _run(_args(cascade, out, interp))
    assert done.returncode == 0, done.stderr
    assert (out / ".rollout" / "segment_000000.npz").stat().st_mtime_ns == first_segment  # not redone
    got = _decoded(out / "video.mp4")
    assert len(got) == len(expected) == 24
    assert all(np.array_equal(a, b) for a, b in zip(got, expected))
    assert (out / "conditions.jsonl").read_text() == (reference / "conditions.jsonl").read_text()
    assert not list(out.glob(".*.tmp"))


def test_an_interpolation_export_at_the_wrong_frame_rate_is_refused(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    exports = write_micro_exports(tmp_path / "exports", interpolation=True)
    wrong = exports["interpolation"]
    marker = json.loads((wrong / "drivesim_export.json").read_text())
    marker["data"]["fps"] = 3.0  # trained at the key rate, not 4x it
    (wrong / "drivesim_export.json").write_text(json.dumps(marker))
    out = tmp_path / "run"
    code = main(["generate", f"checkpoint={exports['temporal']}", f"out={out}", f"interpolation={wrong}",
                 "seconds=1", "sampler.steps=1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "needs 12 fps" in err, err
    assert not out.exists()
