"""LoRA on the spatial attention projections only, through peft (the DreamBooth/LoRA swap).

`target_modules` is a regex that peft full-matches against module names: it names the `to_q`,
`to_k`, `to_v` and `to_out.0` projections of the spatial transformers' `attn1` / `attn2`, under
diffusers' own block names, so a temporal layer (`temporal_*`) or a condition encoder
(`condition_*`) can never match; an `exclude_modules` regex and a check after injection make sure.
Works on a `UNet2DConditionModel` and on the `VideoUNet` that keeps its spatial names.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model, set_peft_model_state_dict
from peft.tuners.lora import LoraLayer
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

from drivesim.models.weights import save_tensors

SPATIAL_ATTENTION_TARGETS = (
    r"(?:down_blocks\.\d+|mid_block|up_blocks\.\d+)\.attentions\.\d+\.transformer_blocks\.\d+"
    r"\.attn[12]\.(?:to_q|to_k|to_v|to_out\.0)"
)
# The spatial ResNets' 3x3 convolutions, for subjects that attention alone cannot learn (`targets`).
SPATIAL_CONV_TARGETS = r"(?:down_blocks\.\d+|mid_block|up_blocks\.\d+)\.resnets\.\d+\.(?:conv1|conv2)"
NEVER_TARGETS = r".*(?:temporal|condition_).*"
TARGETS = {"attention": SPATIAL_ATTENTION_TARGETS,
           "attention+conv": f"(?:{SPATIAL_ATTENTION_TARGETS})|(?:{SPATIAL_CONV_TARGETS})"}


@dataclass
class LoraOptions:
    """Rank, scale (`alpha / rank`) and dropout of the LoRA adapters."""

    rank: int = 4
    alpha: int | None = None  # None: alpha = rank, a scale of 1
    dropout: float = 0.0
    adapter_name: str = "default"
    targets: str = "attention"  # attention | attention+conv (the spatial ResNet convs too)

    def __post_init__(self) -> None:
        if self.targets not in TARGETS:
            raise ValueError(f"LoraOptions.targets must be one of {', '.join(TARGETS)}, got {self.targets!r}")
        if self.rank < 1:
            raise ValueError(f"LoraOptions.rank must be >= 1, got {self.rank}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoraOptions.dropout must lie in [0, 1), got {self.dropout}")

    def peft_config(self, exclude: bool = True) -> LoraConfig:
        return LoraConfig(r=self.rank, lora_alpha=self.alpha if self.alpha is not None else self.rank,
                          lora_dropout=self.dropout, target_modules=TARGETS[self.targets],
                          exclude_modules=NEVER_TARGETS if exclude else None, init_lora_weights=True)


def lora_module_names(model: nn.Module) -> list[str]:
    """Names of the modules peft wrapped with LoRA."""
    return [name for name, module in model.named_modules() if isinstance(module, LoraLayer)]


def add_lora(model: nn.Module, options: LoraOptions | None = None) -> list[str]:
    """Wrap the spatial attention projections of `model` in place; returns the wrapped module names.

    LoRA's B matrices start at zero, so the model's output is unchanged until trained. peft marks
    only the adapters trainable: everything else in `model` stops taking gradients.
    """
    options = options or LoraOptions()
    # peft warns when an exclusion excludes nothing (a plain image UNet): exclude only where needed.
    non_spatial = any(re.fullmatch(NEVER_TARGETS, name) for name, _ in model.named_modules())
    inject_adapter_in_model(options.peft_config(exclude=non_spatial), model, adapter_name=options.adapter_name)
    wrapped = lora_module_names(model)
    if not wrapped:
        raise ValueError(f"no spatial attention projection in {type(model).__name__} matched "
                         f"{SPATIAL_ATTENTION_TARGETS!r}")
    bad = [n for n in wrapped if "temporal" in n or "condition_" in n]
    if bad:
        raise RuntimeError(f"LoRA wrapped non-spatial modules {bad}; the target regex is wrong")
    return wrapped


def save_lora(model: nn.Module, path: str | Path, options: LoraOptions) -> None:
    """Write the LoRA weights (safetensors, atomic) with their options in the metadata."""
    path = Path(path)
    state = get_peft_model_state_dict(model, adapter_name=options.adapter_name)
    if not state:
        raise ValueError(f"{type(model).__name__} has no LoRA adapter {options.adapter_name!r} to save")
    save_tensors(state, path, {"drivesim_lora": json.dumps(asdict(options))})


def read_lora_options(path: str | Path) -> LoraOptions:
    """The options stored beside the weights by `save_lora`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LoRA file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{path} is not a readable safetensors file: {exc}") from exc
    if "drivesim_lora" not in meta:
        raise ValueError(f"{path} has no drivesim_lora metadata: not written by save_lora")
    return LoraOptions(**json.loads(meta["drivesim_lora"]))


def load_lora(model: nn.Module, path: str | Path) -> list[str]:
    """Add LoRA to `model` (if it has none) with the stored options and load the weights strictly."""
    options = read_lora_options(path)
    wrapped = lora_module_names(model) or add_lora(model, options)
    loaded = load_file(str(path))
    expected = get_peft_model_state_dict(model, adapter_name=options.adapter_name)
    missing = sorted(set(expected) - set(loaded))
    extra = sorted(set(loaded) - set(expected))
    if missing or extra:
        first = (missing or extra)[0]
        raise KeyError(f"{path}: LoRA keys do not match the model ({len(missing)} missing, {len(extra)} "
                       f"unexpected, first {first!r})")
    for key, value in loaded.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise ValueError(f"{path}: LoRA key {key!r} has shape {tuple(value.shape)}, the model expects "
                             f"{tuple(expected[key].shape)}")
    set_peft_model_state_dict(model, loaded, adapter_name=options.adapter_name)
    return wrapped


def merge_lora(model: nn.Module) -> list[str]:
    """Fold every LoRA into its base weight and unwrap it, restoring the source key names.

    After merging, the spatial weights are a plain SD UNet again: they save as the spatial group and
    take any temporal weights (the DreamBooth/LoRA swap). Returns the merged module names.
    """
    merged = lora_module_names(model)
    for name in merged:
        module = model.get_submodule(name)
        assert isinstance(module, LoraLayer)
        module.merge(safe_merge=True)  # type: ignore[operator]
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, module.get_base_layer())
    return merged
