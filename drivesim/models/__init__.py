"""The Video LDM: inflated video UNet, its conditioning, VAE and weight groups."""

from drivesim.models.blend import AlphaBlender
from drivesim.models.condition import ConditionResiduals, VideoCondition

__all__ = ["AlphaBlender", "ConditionResiduals", "VideoCondition"]
