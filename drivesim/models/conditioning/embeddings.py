"""Small zero-initialised embedders shared by the encoders (scalar levels, ids)."""

from __future__ import annotations

from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import Tensor, nn


def zero_init(module: nn.Module) -> nn.Module:
    """Zero every parameter of `module`: the encoder's last layer, so it starts as a no-op."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class LevelEmbedding(nn.Module):
    """A level in [0, 1] (B,) -> sinusoid (as a timestep, level * 1000) -> MLP -> zero-init linear."""

    def __init__(self, embed_dim: int, out_dim: int) -> None:
        super().__init__()
        self.sinusoid = Timesteps(embed_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.mlp = TimestepEmbedding(embed_dim, embed_dim, out_dim=out_dim)
        zero_init(self.mlp.linear_2)

    def forward(self, level: Tensor) -> Tensor:
        emb = self.sinusoid(level.float().reshape(-1) * 1000.0)
        return self.mlp(emb.to(self.mlp.linear_1.weight.dtype))


def mlp_head(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """Linear -> SiLU -> zero-init linear."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.SiLU(), zero_init(nn.Linear(hidden, out_dim)))
