"""drivesim: a driving-scene world simulator toolkit built on the Video LDM recipe."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drivesim.simulator import Simulator

__version__ = "0.1.0"

__all__ = ["Simulator", "__version__"]


def __getattr__(name: str) -> object:
    """`drivesim.Simulator` imports torch and the models on first use only, so `import drivesim` stays cheap."""
    if name == "Simulator":
        from drivesim.simulator import Simulator

        return Simulator
    raise AttributeError(f"module 'drivesim' has no attribute {name!r}")
