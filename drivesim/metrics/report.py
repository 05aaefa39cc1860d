"""Writing an evaluation: DIR/metrics.json (every figure, its sample count, the full protocol),
DIR/summary.md, and one PNG per metric with a drift record (value per window of rollout time)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from drivesim.atomic import atomic_path, atomic_write_text


def finite_json(value: Any) -> Any:
    """NaN and infinities -> None, so metrics.json is valid JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    return value


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def _sha(record: Any) -> str:
    if isinstance(record, dict):
        if isinstance(record.get("sha256"), str):
            return record["sha256"]
        for value in record.values():
            found = _sha(value)
            if found != "-":
                return found
    return "-"


def summary_markdown(report: dict) -> str:
    p = report["protocol"]
    lines = [f"# Evaluation under protocol `{p['name']}`", "", p.get("description", ""), "",
             "| metric | value | n | real | n real | drift slope / s |", "|---|---|---|---|---|---|"]
    for name, m in report["metrics"].items():
        slope = (m.get("drift") or {}).get("slope_per_second")
        lines.append(f"| {name} | {_fmt(m.get('value'))} | {_fmt(m.get('n'))} | {_fmt(m.get('real'))} | "
                     f"{_fmt(m.get('n_real'))} | {_fmt(slope)} |")
    if report.get("unavailable"):
        lines += ["", "Not measured:", ""] + [f"- `{k}`: {v}" for k, v in report["unavailable"].items()]
    lines += ["", f"Clips of {p['clip_frames']} frames at {p['fps']} fps, frames {p['size'][0]}x{p['size'][1]} "
              f"({p['resize']}); context frames {p['context_frames']} "
              f"({'counted' if p['count_context'] else 'not counted'}).",
              f"Generated: {p['generated'].get('videos')} video(s), {p['generated'].get('frames')} frames; "
              f"real: {p['real'].get('source')}, {p['real'].get('clips', p['real'].get('videos'))} clip(s).",
              "Extractors: " + (", ".join(f"{k} (sha256 {_sha(v)[:12]})" for k, v in p["extractors"].items()) or "-"), ""]
    return "\n".join(lines)


def plot_drift(name: str, metric: dict, path: Path) -> bool:
    rows = (metric.get("drift") or {}).get("windows") or []
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    ax.plot([(r["start"] + r["end"]) / 2 for r in rows], [r["value"] for r in rows], marker="o", label="generated")
    if isinstance(metric.get("real"), float):
        ax.axhline(metric["real"], color="grey", linestyle="--", label="real")
    ax.set_xlabel("rollout time (s)")
    ax.set_ylabel(name)
    ax.set_title(f"{name} per {metric['drift']['window_seconds']:g} s window")
    ax.legend(loc="best")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return True


def write_report(report: dict, out: str | Path) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clean = finite_json(report)
    atomic_write_text(out / "metrics.json", json.dumps(clean, indent=2, allow_nan=False) + "\n")
    atomic_write_text(out / "summary.md", summary_markdown(clean))
    for name, metric in clean["metrics"].items():
        plot_drift(name, metric, out / f"{name}.png")
    return out / "metrics.json"
