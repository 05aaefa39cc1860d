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
