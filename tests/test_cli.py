"""The CLI contract: typed configs, one-line errors with exit code 2, help listings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from drivesim.cli import main
from drivesim.config import ConfigError, compose_command


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "drivesim", *args], capture_output=True, text=True, timeout=120)


def test_unknown_key_exits_2_with_one_line_naming_it() -> None:
    result = _run("train", "no_such_key=1")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "no_such_key" in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("command", "override", "named"),
    [
        ("train", "+no_such_key=1", "no_such_key"),
        ("train", "+model.no_such_field=3", "model.no_such_field"),
        ("train", "trainer.max_steps=abc", "max_steps"),
        ("synth", "scenes=many", "scenes"),
        ("train", "model=no_such_model", "no_such_model"),
    ],
)
def test_invalid_configs_are_errors_naming_the_key(capsys: pytest.CaptureFixture[str], command: str,
                                                   override: str, named: str) -> None:
    assert main([command, override]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err


def test_missing_required_value_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate"]) == 2
    assert "generated" in capsys.readouterr().err


def test_free_dict_nodes_accept_new_keys() -> None:
    cfg = compose_command("train", ["+model.unet.dropout=0.25"])
    assert cfg.model.unet.dropout == 0.25


def test_compose_raises_config_error_for_bad_type() -> None:
    with pytest.raises(ConfigError, match="seed"):
        compose_command("train", ["seed=1.5x"])


def test_help_lists_subcommands_and_groups(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("train", "generate", "evaluate", "synth", "demo"):
        assert command in out
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    for group in ("model:", "data:", "stage:", "trainer:"):
        assert group in out
    assert "micro" in out


def test_unknown_command_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fly"]) == 2
    assert "fly" in capsys.readouterr().err


def test_generate_without_checkpoint_exits_2_without_output(tmp_path) -> None:
    result = _run("generate", f"out={tmp_path / 'gen'}")
    assert result.returncode == 2
    assert "checkpoint=" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "gen").exists()


def test_the_demo_recipe_presets_compose_and_chain() -> None:
    """Every stage `scripts/train_demo.sh` runs is a preset that composes against the schema, and each
    stage starts from the export the stage before it writes (the chain the README documents)."""
    import re
    from pathlib import Path

    script = (Path(__file__).resolve().parents[1] / "scripts" / "train_demo.sh").read_text()
    stages = re.search(r'\$\{@:-([a-z_ ]+)\}', script).group(1).split()  # type: ignore[union-attr]
    assert stages == ["autoencoder", "autoencoder_finetune", "image", "prediction", "interpolation"]
    stages.append("interpolation_finetune")  # optional (not shipped), chained after the interpolation stage
    cfg = {s: compose_command("train", [f"experiment=demo/{s}"]) for s in stages}
    assert [str(cfg[s].stage.name) for s in stages] == ["autoencoder", "autoencoder", "image", "temporal",
                                                        "interpolation", "interpolation"]
    for parent, child, key in (("autoencoder", "autoencoder_finetune", "vae"), ("autoencoder_finetune", "image", "vae"),
                               ("image", "prediction", "pretrained"), ("image", "interpolation", "pretrained"),
                               ("interpolation", "interpolation_finetune", "pretrained")):
        assert str(cfg[child].model[key]) == f"{cfg[parent].out}/export", (child, key)
    # the fine-tune trains on the prior the demo samples its interpolation calls from
    demo = compose_command("demo", [])
    assert float(cfg["interpolation_finetune"].stage.noise_correlation) == float(
        demo.interpolation_sampler.noise_correlation) > 0
    assert float(cfg["interpolation"].stage.noise_correlation) == 0.0


def test_a_field_under_a_null_config_node_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """model=sd15 has no condition encoders: setting one of their fields is a config error, not a traceback."""
    for override in ("model.conditioning.embed_dim=32", "model.conditioning={embed_dim:32}"):
        assert main(["train", "model=sd15", override, "out=never-written"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "null here" in err, err


@pytest.mark.parametrize(("strategy", "accelerator"), [("fsdp", "cpu"), ("fsdp", "auto"),
                                                       ("deepspeed_stage_3", "auto")])
def test_sharding_strategies_are_refused_before_anything_is_written(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                    strategy: str, accelerator: str) -> None:
    out = tmp_path / "run"
    assert main(["train", "model=micro", f"trainer.strategy={strategy}", f"trainer.accelerator={accelerator}",
                 f"out={out}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"trainer.strategy={strategy} is not supported" in err, err
    assert not out.exists()
