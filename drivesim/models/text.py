"""Text conditioning: any local transformers text encoder, projected to the UNet's cross-attention width.

The projection belongs here, not in the UNet (DESIGN.md section 3): CLIP-L (768) feeds SD 1.5 as
is, while MiniLM (384, the embedded default) or CLIP-H (1024) go through a trained linear layer.
Sentence encoders (a sentence-transformers folder with a mean-pooling module) give one pooled token.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import load_file
from torch import Tensor, nn
from transformers import AutoModel, AutoTokenizer

from drivesim.models.weights import save_tensors

log = logging.getLogger(__name__)

Pooling = Literal["none", "mean"]
# SD's text context length; longer prompts are truncated, as SD's pipelines do.
DEFAULT_MAX_LENGTH = 77
_CLIP_TYPES = ("clip_text_model", "clip")


def _sentence_transformer_options(folder: Path) -> tuple[Pooling | None, bool]:
    """(pooling, normalise) declared by a sentence-transformers folder's modules.json, if any."""
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return None, False
    try:
        modules = json.loads(modules_file.read_text())
        types = [m["type"].rsplit(".", 1)[-1] for m in modules]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{modules_file}: not a sentence-transformers modules list ({exc})") from exc
    pooling: Pooling | None = None
    if "Pooling" in types:
        entry = modules[types.index("Pooling")]
        cfg = json.loads((folder / entry["path"] / "config.json").read_text())
        if not cfg.get("pooling_mode_mean_tokens", False):
            raise ValueError(f"{folder}: only mean pooling is supported, got {cfg}")
        pooling = "mean"
    return pooling, "Normalize" in types


class TextEncoder(nn.Module):
    """`encoder(prompts) -> (B, L, cross_attention_dim)`; the text model is frozen, the projection trains."""

    def __init__(self, model: nn.Module, tokenizer: Any, cross_attention_dim: int, pooling: Pooling = "none",
                 normalize: bool = False, max_length: int | None = None) -> None:
        super().__init__()
        if pooling not in ("none", "mean"):
            raise ValueError(f"pooling must be 'none' or 'mean', got {pooling!r}")
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.pooling: Pooling = pooling
        self.normalize = normalize
        limit = int(getattr(tokenizer, "model_max_length", DEFAULT_MAX_LENGTH) or DEFAULT_MAX_LENGTH)
        self.max_length = int(max_length) if max_length is not None else min(limit, DEFAULT_MAX_LENGTH)
        config: Any = model.config
        self.hidden_size = int(config.hidden_size)
        self.cross_attention_dim = int(cross_attention_dim)
        self.is_clip = getattr(config, "model_type", "") in _CLIP_TYPES
        self.projection: nn.Module = (nn.Identity() if self.hidden_size == self.cross_attention_dim
                                      else nn.Linear(self.hidden_size, self.cross_attention_dim))

    @classmethod
    def from_pretrained(cls, path: str | Path, cross_attention_dim: int, pooling: Pooling | None = None,
                        normalize: bool | None = None, max_length: int | None = None,
                        tokenizer_path: str | Path | None = None) -> TextEncoder:
        """Load from a local model folder, or an SD pipeline folder's `text_encoder/` + `tokenizer/`.

        `tokenizer_path` overrides where the tokenizer is read (default: beside the model).
        `pooling` / `normalize` default to what a sentence-transformers folder declares, else none.
        Never touches the hub (local_files_only=True).
        """
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"text encoder folder {path} does not exist")
        model_dir, tok_dir = path, path
        if (path / "text_encoder").is_dir():
            model_dir = path / "text_encoder"
            tok_dir = path / "tokenizer" if (path / "tokenizer").is_dir() else model_dir
        if tokenizer_path is not None:
            tok_dir = Path(tokenizer_path)
        if not (model_dir / "config.json").is_file():
            raise FileNotFoundError(f"{model_dir} has no config.json: not a transformers model folder")
        if not (tok_dir / "tokenizer_config.json").is_file():
            raise FileNotFoundError(f"{tok_dir} has no tokenizer_config.json: give tokenizer_path")
        declared_pooling, declared_norm = _sentence_transformer_options(model_dir)
        model = AutoModel.from_pretrained(model_dir, local_files_only=True)
        if hasattr(model, "text_model") and hasattr(model, "vision_model"):  # a full CLIPModel
            model = model.text_model
        tokenizer = AutoTokenizer.from_pretrained(tok_dir, local_files_only=True)
        log.info("text encoder %s from %s (pooling %s)", type(model).__name__, model_dir,
                 pooling or declared_pooling or "none")
        return cls(model, tokenizer, cross_attention_dim,
                   pooling=pooling if pooling is not None else (declared_pooling or "none"),
                   normalize=normalize if normalize is not None else declared_norm, max_length=max_length)

    def train(self, mode: bool = True) -> TextEncoder:
        """Only the projection trains: the frozen text model stays in eval mode (no dropout)."""
        super().train(mode)
        self.model.eval()
        return self

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def tokenize(self, prompts: Sequence[str]) -> dict[str, Tensor]:
        """Pad to `max_length` (SD's fixed 77-token context), truncating longer prompts."""
        if isinstance(prompts, str):
            raise TypeError("prompts must be a sequence of strings, not one string")
        tokens = self.tokenizer(list(prompts), padding="max_length", max_length=self.max_length,
                                truncation=True, return_tensors="pt")
        return {k: v.to(self.device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")}

    def encode_hidden(self, prompts: Sequence[str]) -> Tensor:
        """The text model's own output, before projection: (B, L, hidden) or (B, 1, hidden) pooled."""
        tokens = self.tokenize(prompts)
        mask = tokens["attention_mask"]
        with torch.no_grad():
            # CLIP is run as SD runs it: causal mask only, padding tokens attend (SD conditions on them).
            hidden = self.model(input_ids=tokens["input_ids"],
                                attention_mask=None if self.is_clip else mask).last_hidden_state
        if self.pooling == "mean":
            weights = mask.to(hidden.dtype).unsqueeze(-1)
            hidden = (hidden * weights).sum(1, keepdim=True) / weights.sum(1, keepdim=True).clamp_min(1.0)
        if self.normalize:
            hidden = nn.functional.normalize(hidden, dim=-1)
        return hidden

    def forward(self, prompts: Sequence[str]) -> Tensor:
        return self.projection(self.encode_hidden(prompts))

    def null_embedding(self, batch: int = 1) -> Tensor:
        """The empty prompt's embedding (B, L, D): the unconditional text for CFG and text dropout."""
        return self.forward([""]).expand(batch, -1, -1)

    # ------------------------------------------------------------------ projection weights
    def save_projection(self, path: str | Path) -> None:
        """Write the projection (the only trained part) to safetensors, atomically."""
        save_tensors(self.projection.state_dict(), path,
                     {"hidden_size": str(self.hidden_size), "cross_attention_dim": str(self.cross_attention_dim)})

    def load_projection(self, path: str | Path) -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"text projection file {path} does not exist")
        loaded = load_file(str(path))
        own = self.projection.state_dict()
        if set(loaded) != set(own) or any(loaded[k].shape != own[k].shape for k in own):
            shapes = {k: tuple(v.shape) for k, v in loaded.items()}
            raise ValueError(f"{path}: projection tensors {shapes} do not fit {self.hidden_size} -> "
                             f"{self.cross_attention_dim}")
        self.projection.load_state_dict(loaded)
