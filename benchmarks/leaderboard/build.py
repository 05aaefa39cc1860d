"""Build benchmarks/leaderboard/LEADERBOARD.md from published.yaml and drivesim.yaml.

    python benchmarks/leaderboard/build.py                                  # regenerate the table
    python benchmarks/leaderboard/build.py --add DIR/metrics.json --model NAME   # append a drivesim result
"""

from __future__ import annotations

import argparse
from pathlib import Path

from drivesim.atomic import atomic_write_text
from drivesim.metrics.leaderboard import append_entry, entry_from_metrics, load_entries, markdown

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--add", type=Path, help="a metrics.json written by drivesim evaluate")
    parser.add_argument("--model", help="the name to file the result under (with --add)")
    parser.add_argument("--dir", type=Path, default=HERE)
    args = parser.parse_args(argv)
    ours = args.dir / "drivesim.yaml"
    if args.add:
        if not args.model:
            parser.error("--add needs --model")
        append_entry(ours, entry_from_metrics(args.add, args.model))
    text = markdown(load_entries(args.dir / "published.yaml"), load_entries(ours))
    atomic_write_text(args.dir / "LEADERBOARD.md", text)
    print(f"wrote {args.dir / 'LEADERBOARD.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
