"""Per-sample and per-frame scalars -> additions to the per-frame time embedding.

Scene labels, ego actions, noise-augmentation level, stage id and the context noise level each
have their own embedder ending in a zero-init linear, and each output is multiplied by its
presence, so an unknown label (-1), a NaN ego value, or a sample without context adds exactly zero.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from drivesim.models.conditioning.embeddings import LevelEmbedding, mlp_head

# Ego features are scaled to order one before the MLP: speeds in units of 10 m/s, waypoints of 10 m.
SPEED_SCALE = 10.0
WAYPOINT_SCALE = 10.0


def _check(name: str, value: Tensor, shape: tuple[int, ...]) -> None:
    if tuple(value.shape) != shape:
        raise ValueError(f"VideoCondition.{name} must have shape {shape}, got {tuple(value.shape)}")


class LabelEmbedding(nn.Module):
    """(B, 3) labels, -1 = unknown -> (B, E); an all-unknown sample gives exactly zero."""

    def __init__(self, vocab_sizes: tuple[int, ...], embed_dim: int, out_dim: int) -> None:
        super().__init__()
        self.vocab_sizes = tuple(vocab_sizes)
        # Row 0 is "unknown": padding_idx keeps it zero and untrained.
        self.tables = nn.ModuleList(nn.Embedding(v + 1, embed_dim, padding_idx=0) for v in vocab_sizes)
        self.head = mlp_head(embed_dim, embed_dim, out_dim)

    def forward(self, labels: Tensor) -> Tensor:
        labels = labels.long()
        emb = 0
        for j, (table, size) in enumerate(zip(self.tables, self.vocab_sizes)):
            col = labels[:, j]
            if ((col < -1) | (col >= size)).any():
                raise ValueError(f"VideoCondition.labels[:, {j}] must lie in [-1, {size}), got {col.tolist()}")
            # Masked as well as padding_idx, so unknown stays exactly zero even if row 0 is edited.
            vectors = table(col + 1)
            emb = emb + vectors * (col >= 0).unsqueeze(-1).to(vectors.dtype)
        known = (labels >= 0).any(dim=1, keepdim=True)
        return self.head(emb) * known.to(next(self.head.parameters()).dtype)


class EgoEmbedding(nn.Module):
    """Speed (B, T), yaw rate (B, T), waypoints (B, T, K, 2) -> (B, T, E).

    NaN marks an unknown value, per value: speed and yaw rate per frame, each waypoint on its own (a
    future beyond the data is unknown while the near waypoints are known). Unknown values are zeroed
    and their presence flags set to 0; a frame with nothing known adds exactly zero.
    """

    def __init__(self, max_waypoints: int, embed_dim: int, out_dim: int) -> None:
        super().__init__()
        self.max_waypoints = max_waypoints
        # speed, yaw rate, 2K waypoint coordinates, then presence flags: speed, yaw rate, K waypoints.
        self.head = mlp_head(3 * max_waypoints + 4, embed_dim, out_dim)

    def forward(self, speed: Tensor | None, yaw_rate: Tensor | None, waypoints: Tensor | None,
                batch: int, frames: int) -> Tensor:
        weight = next(self.head.parameters())
        dtype, device = weight.dtype, weight.device
        k = self.max_waypoints
        feats, flags = [], []
        for name, value, scale in (("ego_speed", speed, SPEED_SCALE), ("ego_yaw_rate", yaw_rate, 1.0)):
            if value is None:
                value = torch.full((batch, frames), float("nan"), device=device)
            _check(name, value, (batch, frames))
            known = torch.isfinite(value)
            feats.append(torch.where(known, value / scale, torch.zeros_like(value))[..., None])
            flags.append(known)
        if waypoints is None:
            waypoints = torch.full((batch, frames, 1, 2), float("nan"), device=device)
        if waypoints.ndim != 4 or tuple(waypoints.shape[:2]) != (batch, frames) or waypoints.shape[3] != 2:
            raise ValueError(f"VideoCondition.ego_waypoints must be (B, T, K, 2) = ({batch}, {frames}, K, 2), "
                             f"got {tuple(waypoints.shape)}")
        if waypoints.shape[2] > k:
            raise ValueError(f"VideoCondition.ego_waypoints has {waypoints.shape[2]} waypoints, "
                             f"more than ConditionOptions.max_waypoints = {k}")
        wp_known = torch.isfinite(waypoints).all(dim=-1)  # (B, T, K): per waypoint
        wp = torch.where(wp_known[..., None], waypoints / WAYPOINT_SCALE, torch.zeros_like(waypoints))
        pad = k - wp.shape[2]
        wp = nn.functional.pad(wp, (0, 0, 0, pad)).flatten(2)
        wp_flags = nn.functional.pad(wp_known, (0, pad))
        feats.append(wp)
        flag = torch.cat([torch.stack(flags, dim=-1), wp_flags], dim=-1)
        x = torch.cat([*feats, flag.to(wp.dtype)], dim=-1).to(device=device, dtype=dtype)
        return self.head(x) * flag.any(dim=-1, keepdim=True).to(dtype)


class StageEmbedding(nn.Module):
    """Cascade stage id (B,) -> (B, E)."""

    def __init__(self, num_stages: int, embed_dim: int, out_dim: int) -> None:
        super().__init__()
        self.num_stages = num_stages
        self.table = nn.Embedding(num_stages, embed_dim)
        self.head = mlp_head(embed_dim, embed_dim, out_dim)

    def forward(self, stage_id: Tensor) -> Tensor:
        stage_id = stage_id.long()
        if ((stage_id < 0) | (stage_id >= self.num_stages)).any():
            raise ValueError(f"VideoCondition.stage_id must lie in [0, {self.num_stages}), got {stage_id.tolist()}")
        return self.head(self.table(stage_id))


class FrameEmbedder(nn.Module):
    """Sum of the enabled scalar embedders, per frame: (B*T, E) in `(b t)` order, or None if none given."""

    def __init__(self, *, labels: bool, ego: bool, noise_aug: bool, stage: bool, context_noise: bool,
                 label_vocab_sizes: tuple[int, ...], max_waypoints: int, num_stages: int,
                 embed_dim: int, time_embed_dim: int) -> None:
        super().__init__()
        e, d = embed_dim, time_embed_dim
        self.labels = LabelEmbedding(label_vocab_sizes, e, d) if labels else None
        self.ego = EgoEmbedding(max_waypoints, e, d) if ego else None
        self.noise_aug = LevelEmbedding(e, d) if noise_aug else None
        self.stage = StageEmbedding(num_stages, e, d) if stage else None
        self.context_noise = LevelEmbedding(e, d) if context_noise else None

    def forward(self, *, labels: Tensor | None, ego_speed: Tensor | None, ego_yaw_rate: Tensor | None,
                ego_waypoints: Tensor | None, noise_aug_level: Tensor | None, stage_id: Tensor | None,
                context_noise_level: Tensor | None, has_context: Tensor | None,
                batch: int, frames: int) -> Tensor | None:
        per_sample: list[Tensor] = []  # (B, E)
        per_frame: list[Tensor] = []  # (B, T, E)
        if self.labels is not None and labels is not None:
            _check("labels", labels, (batch, 3))
            per_sample.append(self.labels(labels))
        if self.ego is not None and not (ego_speed is None and ego_yaw_rate is None and ego_waypoints is None):
            per_frame.append(self.ego(ego_speed, ego_yaw_rate, ego_waypoints, batch, frames))
        if self.noise_aug is not None and noise_aug_level is not None:
            _check("noise_aug_level", noise_aug_level, (batch,))
            per_sample.append(self.noise_aug(noise_aug_level))
        if self.stage is not None and stage_id is not None:
            _check("stage_id", stage_id, (batch,))
            per_sample.append(self.stage(stage_id))
        if self.context_noise is not None and context_noise_level is not None and has_context is not None:
            _check("context_noise_level", context_noise_level, (batch,))
            emb = self.context_noise(context_noise_level)
            per_sample.append(emb * has_context.reshape(batch, 1).to(emb.dtype))
        if not per_sample and not per_frame:
            return None
        total: Tensor = sum(per_frame) if per_frame else 0  # type: ignore[assignment]
        if per_sample:
            total = total + sum(per_sample)[:, None, :]  # type: ignore[index]
        total = total.expand(batch, frames, -1) if total.shape[1] == 1 else total
        return total.reshape(batch * frames, -1)
