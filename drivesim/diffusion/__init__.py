"""Diffusion maths as small objects: the training objective (noise schedule, targets, loss weights);
samplers live beside it (drivesim.diffusion.sampling)."""

from drivesim.diffusion.objectives import DiffusionObjective

__all__ = ["DiffusionObjective"]
