"""drivesim: a driving-scene world simulator toolkit built on the Video LDM recipe."""

__version__ = "0.1.0"
