"""Which condition encoders a video UNet carries, their widths and their CFG dropout probabilities."""

from __future__ import annotations

from dataclasses import dataclass, field

from drivesim.vocab import CLASSES, LABEL_VOCAB

# Scene-label vocabularies, in the column order of `VideoCondition.labels` (B, 3); -1 = unknown.
TIME_OF_DAY = LABEL_VOCAB["time_of_day"][1:]
WEATHER = LABEL_VOCAB["weather"][1:]
CROWDEDNESS = LABEL_VOCAB["crowdedness"][1:]


@dataclass
class DropoutProbabilities:
    """Per-sample probability that each condition is dropped (made absent) in training, for CFG."""

    context: float = 0.1
    boxes: float = 0.1
    labels: float = 0.1
    ego: float = 0.1
    text: float = 0.1

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"dropout.{name} must lie in [0, 1], got {value}")


@dataclass
class ConditionOptions:
    """Encoders to build and their sizes; all of them are zero-initialised at their last layer."""

    context: bool = True  # context latents + mask -> conv_in residual
    # ... and every frame also sees its nearest given frames before / after it (ContextEncoder docstring)
    context_reference: bool = False
    # ... and the output is blended with the one "the nearest given frames are the clean frame" implies, by
    # a learned strength per (noise-level bucket, distance to a given frame): ContextBlend's docstring.
    context_blend: bool = False
    context_blend_buckets: int = 20
    context_blend_distances: int = 8
    # The upsampler's counterpart: the output blended with the one "the upscaled low-res frame is the clean
    # frame" implies (`VideoCondition.guess`), one learned strength per noise-level bucket.
    guess_blend: bool = False
    guess_blend_buckets: int = 20
    context_noise: bool = True  # context noise-augmentation level -> time embedding
    boxes: bool = True  # per-frame box layout -> adapter residuals for every down block
    labels: bool = True  # time of day, weather, crowdedness -> time embedding
    ego: bool = True  # speed, yaw rate, waypoints per frame -> time embedding
    noise_aug: bool = False  # low-res noise-augmentation level (upsampler) -> time embedding
    stage: bool = False  # cascade stage id (interpolation passes) -> time embedding
    num_box_classes: int = len(CLASSES)  # drivesim.vocab.CLASSES (nuScenes detection classes + other)
    max_instances: int = 64  # instance ids are hashed (id mod max_instances) into this many embeddings
    box_embed_dim: int = 16  # layout channels K painted inside each box
    box_adapter_width: int = 32  # hidden width of the box adapter's conv pyramid
    label_vocab_sizes: tuple[int, int, int] = (len(TIME_OF_DAY), len(WEATHER), len(CROWDEDNESS))
    max_waypoints: int = 8  # K in ego_waypoints (B, T, K, 2); fewer are zero-padded
    num_stages: int = 4
    embed_dim: int = 64  # hidden width of the scalar / label / ego embedders
    dropout: DropoutProbabilities = field(default_factory=DropoutProbabilities)

    def __post_init__(self) -> None:
        if isinstance(self.dropout, dict):  # from a Hydra/OmegaConf mapping
            self.dropout = DropoutProbabilities(**self.dropout)
        self.label_vocab_sizes = tuple(int(v) for v in self.label_vocab_sizes)  # type: ignore[assignment]
        if len(self.label_vocab_sizes) != 3 or min(self.label_vocab_sizes) < 1:
            raise ValueError(f"label_vocab_sizes must be three positive sizes, got {self.label_vocab_sizes}")
        if self.context_blend and not self.context:
            raise ValueError("ConditionOptions.context_blend needs the context encoder (context: true)")
        for name in ("context_blend_buckets", "context_blend_distances", "guess_blend_buckets", "num_box_classes", "max_instances", "box_embed_dim", "box_adapter_width",
                     "max_waypoints", "num_stages", "embed_dim"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"ConditionOptions.{name} must be >= 1, got {getattr(self, name)}")
