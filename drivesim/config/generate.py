"""Schemas of the generation config groups: sampler (conf/sampler/) and scenario (conf/scenario/)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class GuidanceScales:
    """Classifier-free guidance scale per condition; 1 = given, not guided; 0 = left out."""

    context: float = 1.0
    boxes: float = 1.0
    labels: float = 1.0
    ego: float = 1.0
    text: float = 1.0


@dataclass
class SamplerConfig:
    name: str = "ddim"  # ddim | dpmpp_2m | euler (diffusers schedulers over the training schedule)
    steps: int = 25
    eta: float = 0.0  # DDIM only
    timestep_spacing: str | None = "trailing"  # diffusers' timestep_spacing; null: the schedule's own
    guidance: GuidanceScales = field(default_factory=GuidanceScales)
    guidance_mode: str = "composed"  # composed (independent) | nested
    # Noise level the context frames are said to carry; null: the training mean (context_noise_max / 2).
    context_noise_level: float | None = None
    # Largest batch of one model call (guidance branches travel as one batch); 0: no limit.
    max_batch: int = 0
    # 1: start from pure noise. s < 1: start s of the way down the schedule from a guess noised to that
    # level (SDEdit): the frames to generate from their given neighbours, the upsampler's from its
    # low-res input; so a model that underuses its context still continues the scene.
    init_strength: float = 1.0
    # Share of the initial noise common to the frames of one model call (each frame still N(0, 1)); 0: independent
    # frames as in training. The demo's interpolation uses it against flicker (measured in README).
    noise_correlation: float = 0.0
    # The guess the frames to generate start from when init_strength < 1: "given" (prediction: the last given
    # key; interpolation: the blend of the two keys' latents) or "ego_warp" (those keys warped by the
    # timeline's ego motion over the ground plane, plus side walls at walls_m metres when set; in-between
    # frames blend their two warped keys; drivesim/pipelines/ego_warp.py).
    init_guess: str = "given"
    walls_m: float | None = None
    # ego_warp: the scenario's agents' 3D boxes are warped by their own tracks (each a solid moved rigidly; what
    # a box hid in the picture becomes the road just before it) instead of lying on the ground plane.
    warp_boxes: bool = False
    # ego_warp (prediction calls): pull each warped guess's per-channel mean and spread of colour this share of
    # the way to the first key's (the first given frame): 0 off. The tiny model's half of each SDEdit step does
    # not hold a scene's colours, so over a minute of keys a dusk drive turns to night and a rainy one to white;
    # the synthetic world's lighting is constant over a drive (a drive into a tunnel is not: leave it at 0).
    colour_anchor: float = 0.0
    # colour_anchor in this many horizontal bands of rows, each held to the same band of the first key (1: one
    # global correction; a dash-cam picture is sky over horizon over road).
    colour_anchor_bands: int = 1


@dataclass
class LabelEdits:
    """Scene labels replacing the replayed scene's (names from drivesim.vocab.LABEL_VOCAB); null: keep."""

    time_of_day: str | None = None
    weather: str | None = None
    crowdedness: str | None = None


@dataclass
class ReplayConfig:
    """`scenario=replay`: a dataset scene as the source of boxes, labels, ego motion and context frames."""

    data: str = "synthetic"  # a conf/data/ option (nuscenes or synthetic)
    root: str | None = None  # the dataset folder; null: the data config's own root
    data_overrides: dict[str, Any] = field(default_factory=dict)  # other data keys: +scenario.replay.data_overrides.K=V
    scene: str | None = None  # scene name or token (nuScenes / synthetic) or video file (videos)
    time: float = 0.0  # seconds into the scene where the generated video starts
    context_frames: int = 2  # given frames before `time` (0: the image model makes the first frame)
    remove: list[str] = field(default_factory=list)  # agent ids to remove
    add: list[Any] = field(default_factory=list)  # agents, as in a scenario file
    # [{id: ID, by: [dx, dy]}] metres in the ego frame (or a mapping id -> [dx, dy] in YAML)
    shift: Any = field(default_factory=list)
    # [{id: ID or ego, factor: F}] (or a mapping id -> factor in YAML)
    speed_scale: Any = field(default_factory=list)
    labels: LabelEdits = field(default_factory=lambda: LabelEdits())


@dataclass
class ScenarioConfig:
    """A scenario: its fields inline (format in conf/scenario/README.md), a file (`path`), or a replay."""

    name: str | None = None  # null: the file's name (conf/scenario/NAME.yaml, or scenario.path's stem)
    path: str | None = None  # a scenario YAML file; when set, the inline fields below are not used
    source: str | None = None  # set when composed: the conf/scenario file the fields came from (errors name it)
    seconds: float | None = None
    labels: dict[str, Any] = field(default_factory=dict)
    text: str | None = None
    ego: Any = None
    agents: list[Any] = field(default_factory=list)
    camera: Any = None
    start: Any = None
    replay: ReplayConfig | None = None
