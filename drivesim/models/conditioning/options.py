"""The condition encoders' options; the schema lives in drivesim.config so configs never import models."""

from drivesim.config.conditioning import (
    CROWDEDNESS,
    TIME_OF_DAY,
    WEATHER,
    ConditionOptions,
    DropoutProbabilities,
)

__all__ = ["CROWDEDNESS", "TIME_OF_DAY", "WEATHER", "ConditionOptions", "DropoutProbabilities"]
