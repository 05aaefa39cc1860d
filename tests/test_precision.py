"""`precision=auto`: bf16 only where the device computes it natively, else fp32; bad values are one-line errors."""

from __future__ import annotations

import pytest
import torch

from drivesim.pipelines import loading
from drivesim.pipelines.errors import GenerateError


@pytest.mark.parametrize(("avx512_bf16", "amx", "want"), [(True, False, "bf16"), (False, True, "bf16"),
                                                           (False, False, "fp32")])
def test_auto_is_bf16_only_on_a_cpu_that_computes_it(monkeypatch: pytest.MonkeyPatch, avx512_bf16: bool, amx: bool,
                                                     want: str) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    assert loading.resolve_precision("auto", "cpu") == want


def test_explicit_precisions_are_kept_and_others_refused() -> None:
    for precision in ("fp32", "bf16", "fp16"):
        assert loading.resolve_precision(precision, "cpu") == precision
    with pytest.raises(GenerateError, match="precision=half: choose from fp32, bf16, fp16, auto"):
        loading.resolve_precision("half", "cpu")


@pytest.mark.parametrize(("trainer", "cuda", "want"), [(None, True, "cpu"), ({"accelerator": "cpu"}, True, "cpu"),
                                                       ({"accelerator": "gpu"}, False, "cuda"),
                                                       ({"accelerator": "auto"}, True, "cuda"),
                                                       ({"accelerator": "auto"}, False, "cpu")])
def test_predict_decides_auto_for_the_trainer_device(monkeypatch: pytest.MonkeyPatch, trainer: dict | None,
                                                     cuda: bool, want: str) -> None:
    """`drivesim generate ... trainer=predict_gpus` loads the cascade on the CPU and Lightning moves it: `auto`
    must be decided for the GPU it runs on, not for the host CPU."""
    from omegaconf import OmegaConf

    from drivesim.pipelines.predict import _trainer_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert _trainer_device(OmegaConf.create({"trainer": trainer})) == want


def test_cuda_bf16_is_native_from_ampere_on_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for capability, native in (((7, 0), False), ((7, 5), False), ((8, 0), True), ((9, 0), True)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        assert loading.native_bf16("cuda:0") is native
