"""`drivesim train | generate | evaluate | synth | demo`: Hydra-composed subcommands over conf/.

Config errors (unknown key, wrong type, missing value) print one line and exit with code 2.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence

from omegaconf import DictConfig, OmegaConf

from drivesim.config import ConfigError, compose_command, config_groups

log = logging.getLogger("drivesim")

EXIT_USAGE = 2

_DESCRIPTIONS = {
    "train": "train one stage of the cascade (image, temporal, interpolation, upsampler, decoder, lora)",
    "generate": "roll out drives and replay scenarios with a trained model",
    "evaluate": "measure FID/FVD and controllability of generated videos against a dataset",
    "synth": "render the synthetic driving world as a nuScenes-format dataset",
    "demo": "the main job on the embedded default (no data, no weights needed)",
    "fetch": "`drivesim fetch inception`: cache the FID Inception-v3 file (the only download drivesim makes)",
}


class UsageError(RuntimeError):
    """A command that cannot run as configured (a missing path, a wrong parent): one line, exit 2."""


class NotLandedError(UsageError):
    """A subcommand whose capability is not built yet: exit 2, never fake output."""


def _not_landed(command: str) -> Callable[[DictConfig], int]:
    def run(cfg: DictConfig) -> int:
        raise NotLandedError(f"`drivesim {command}` is not available yet: its config is valid, but the "
                             f"{command} capability has not landed in this version")

    return run


def _run_train(cfg: DictConfig) -> int:
    from drivesim.training.resolve import TrainConfigError
    from drivesim.training.run import run_training

    try:
        return run_training(cfg)
    except TrainConfigError as exc:
        raise UsageError(str(exc)) from exc


def _run_synth(cfg: DictConfig) -> int:
    from drivesim.synth.command import run_synth

    return run_synth(cfg)


def _run_evaluate(cfg: DictConfig) -> int:
    from drivesim.metrics.evaluate import EvaluationError, run_evaluate

    try:
        return run_evaluate(cfg)
    except EvaluationError as exc:
        raise UsageError(str(exc)) from exc


def _run_generate(cfg: DictConfig) -> int:
    from drivesim.pipelines.run import run_generate

    return run_generate(cfg)


def _run_demo(cfg: DictConfig) -> int:
    from drivesim.demo import run_demo

    return run_demo(cfg)


RUNNERS: dict[str, Callable[[DictConfig], int]] = {
    "train": _run_train,
    "generate": _run_generate,
    "evaluate": _run_evaluate,
    "synth": _run_synth,
    "demo": _run_demo,
}


def _usage() -> str:
    lines = ["usage: drivesim <command> [key=value ...] [--cfg] [--help]", "", "commands:"]
    lines += [f"  {name:<9} {text}" for name, text in _DESCRIPTIONS.items()]
    lines += ["", "Each command is a Hydra app over conf/; `drivesim <command> --help` lists its config groups."]
    return "\n".join(lines)


def _command_help(command: str) -> str:
    cfg = compose_command(command, [])
    groups = config_groups()
    lines = [f"usage: drivesim {command} [key=value ...] [group=option ...] [--cfg]", "",
             _DESCRIPTIONS[command], "", "config groups:"]
    for name, options in groups.items():
        # Top-level groups fill a key of the command's config; nested `<command>/...` groups are its presets.
        head, _, rest = name.partition("/")
        if (not rest and head in cfg) or (rest and head == command):
            lines.append(f"  {name}: {', '.join(options)}")
    lines += ["", "defaults (override any key as key=value):", OmegaConf.to_yaml(cfg).rstrip()]
    return "\n".join(lines)


def _setup_logging() -> None:
    from rich.logging import RichHandler

    logging.basicConfig(level=logging.INFO, format="%(message)s", datefmt="[%X]",
                        handlers=[RichHandler(show_path=False, rich_tracebacks=False)])


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(_usage() + "\n")
        return 0 if args else EXIT_USAGE
    command, rest = args[0], args[1:]
    if command == "fetch":  # not a Hydra app: it takes what to fetch, nothing to configure
        from drivesim.metrics.fetch import run_fetch

        _setup_logging()
        return run_fetch(rest)
    if command not in RUNNERS:
        sys.stderr.write(f"drivesim: unknown command {command!r} (choose from {', '.join(RUNNERS)})\n")
        return EXIT_USAGE
    show_cfg = "--cfg" in rest
    rest = [a for a in rest if a != "--cfg"]
    try:
        if "--help" in rest or "-h" in rest:
            sys.stdout.write(_command_help(command) + "\n")
            return 0
        flags = [a for a in rest if a.startswith("-")]
        if flags:
            raise ConfigError(f"unknown option {flags[0]!r}; pass settings as key=value")
        cfg = compose_command(command, rest)
    except ConfigError as exc:
        sys.stderr.write(f"drivesim {command}: config error: {exc}\n")
        return EXIT_USAGE
    if show_cfg:
        sys.stdout.write(OmegaConf.to_yaml(cfg))
        return 0
    _setup_logging()
    try:
        return RUNNERS[command](cfg)
    except UsageError as exc:
        sys.stderr.write(f"drivesim {command}: {exc}\n")
        return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
