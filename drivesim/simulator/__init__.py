"""The closed-loop simulator: a policy's actions in, generated frames (with their boxes and ego state) out.

`Simulator` loads on first use, so `drivesim.simulator.world` (used by the dataset writer in
`drivesim.pipelines`) imports without the rollout engine.
"""

from typing import TYPE_CHECKING

from drivesim.simulator.observation import EgoState, Observation, SimulatorError

if TYPE_CHECKING:
    from drivesim.simulator.simulator import Simulator

__all__ = ["EgoState", "Observation", "Simulator", "SimulatorError"]


def __getattr__(name: str) -> object:
    if name == "Simulator":
        from drivesim.simulator.simulator import Simulator

        return Simulator
    raise AttributeError(f"module 'drivesim.simulator' has no attribute {name!r}")
