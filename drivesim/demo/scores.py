"""metrics.json of the demo: the cheap synthetic-domain metrics of the generated clip against its scene.

One `evaluate_folder` call, not strict: a group whose network weights are absent is listed under
`unavailable` with its reason while the others are still measured; nothing is substituted. (One call
per group read the generated video, opened the devkit tables and hashed the scene once per group: ~16 s
of a first demo run, session 11.) FID (the real Inception, about 0.15 s per frame on 2 cores, session 12) and FVD (a
local I3D) are left to `drivesim evaluate` and `benchmarks/synth_bench.py`.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from drivesim.config.protocol import ProtocolConfig

log = logging.getLogger(__name__)
NOT_RUN = {"fid": "not run by the demo (the FID Inception costs about 0.15 s per frame): drivesim evaluate",
           "fvd": "not run by the demo (needs a local I3D file): drivesim evaluate i3d=PATH"}


def demo_protocol(protocol: ProtocolConfig, fps: float) -> ProtocolConfig:
    """The protocol, at the video's fps when the cascade cannot reach the protocol's (said in the record)."""
    if abs(fps - protocol.fps) < 1e-6:
        return protocol
    note = f" [demo: measured at the cascade's {fps:g} fps, not the protocol's {protocol.fps:g}: not comparable]"
    return replace(protocol, fps=fps, description=protocol.description + note)


def measure(generated: Path, protocol: ProtocolConfig, fps: float, groups: list[str], data: dict | None = None,
            cache: bool = True) -> dict[str, Any]:
    """{"protocol", "metrics", "unavailable", "not_run"} of the videos under `generated` against `data` (a
    dataset config; None: the protocol's own real side). With `cache`, the real side's results are read
    from and written to the metric caches, keyed by the real data's content (`drivesim.metrics.real_cache`:
    the demo's scene is rendered again every run, byte for byte the same)."""
    from drivesim.data.errors import DataError
    from drivesim.metrics.evaluate import evaluate_folder
    from drivesim.metrics.protocol import protocol_record
    from drivesim.metrics.suite import Unavailable

    proto = demo_protocol(protocol, fps)
    not_run = {k: v for k, v in NOT_RUN.items() if k not in groups}
    try:
        part = evaluate_folder(generated, data=data, protocol=proto, metrics=list(groups), cache=cache,
                               data_by_content=True, strict=False)
    except (Unavailable, DataError) as exc:  # DataError: e.g. the scene is shorter than one clip
        reason = " ".join(str(exc).split())
        log.warning("metrics unavailable: %s", reason)
        return {"protocol": protocol_record(proto, {}, {"root": str(generated)}, {"data": data}), "metrics": {},
                "unavailable": dict.fromkeys(groups, reason), "not_run": not_run}
    return {"protocol": part["protocol"], "metrics": part["metrics"], "unavailable": part.get("unavailable", {}),
            "not_run": not_run}
