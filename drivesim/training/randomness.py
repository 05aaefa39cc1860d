"""Every random draw of training comes from (seed, global sample position), never a global RNG.

So a run killed and resumed draws exactly what the uninterrupted run drew, and a DDP run whose
ranks read their shards of the global order draws what one process with the whole batch draws.
"""

from __future__ import annotations

import hashlib

import torch


def sample_seed(seed: int, position: int, stream: str = "") -> int:
    """A 63-bit seed for one sample (and an optional named stream of draws)."""
    digest = hashlib.sha256(f"drivesim:{seed}:{position}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def sample_generators(seed: int, positions: torch.Tensor | list[int], stream: str = "") -> list[torch.Generator]:
    """One CPU generator per sample of a batch, seeded from its global position."""
    values = positions.tolist() if isinstance(positions, torch.Tensor) else list(positions)
    return [torch.Generator().manual_seed(sample_seed(seed, int(p), stream)) for p in values]


def per_sample(generators: list[torch.Generator], draw: str, shape: tuple[int, ...] = (),
               high: int | None = None) -> torch.Tensor:
    """Stack one draw per sample: `draw` is "rand", "randn" or "randint" (with `high`)."""
    out = []
    for g in generators:
        if draw == "rand":
            out.append(torch.rand(shape, generator=g))
        elif draw == "randn":
            out.append(torch.randn(shape, generator=g))
        elif draw == "randint":
            if high is None:
                raise ValueError("randint needs high")
            out.append(torch.randint(high, shape, generator=g))
        else:
            raise ValueError(f"unknown draw {draw!r}")
    return torch.stack(out) if out else torch.empty((0, *shape))


def clip_timesteps(generators: list[torch.Generator], n: int, power: float = 1.0) -> torch.Tensor:
    """One training timestep per sample in [0, n): uniform for power 1 (the draw earlier runs made), else
    floor(n u^power) with u uniform, so power < 1 draws high noise more often (stage.timestep_power)."""
    if power == 1.0:
        return per_sample(generators, "randint", (), high=n)
    return (per_sample(generators, "rand", ()) ** power * n).long().clamp(0, n - 1)
