"""Scenario files (hand-written drives) and dataset replay, evaluated into per-frame conditions."""

from drivesim.scenario.camera import PinholeCamera, box_corners, project_box, resolve_camera
from drivesim.scenario.spec import (
           Agent,
           CameraSpec,
           Keys,
           Scenario,
           ScenarioError,
           load_scenario,
           parse_scenario,
)
from drivesim.scenario.timeline import BoxRecord, FrameCondition, Timeline

__all__ = ["Agent", "BoxRecord", "CameraSpec", "FrameCondition", "Keys", "PinholeCamera", "Scenario",
           "ScenarioError", "Timeline", "box_corners", "load_scenario", "parse_scenario", "project_box",
           "resolve_camera"]
