#!/usr/bin/env bash
# Refill drivesim/assets/metric_cache: the real-side results of the demo's held-out scene (README "Demo").
# Run after a change to the renderer, the synth-bench-v1 protocol or a metric network: the shipped files
# are keyed by the scene's rendered bytes, the protocol and the networks' hashes, so a stale one is never
# used - the demo then computes the real side itself (about 70 s more).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rm -rf drivesim/assets/metric_cache
DRIVESIM_CACHE="$work/cache" .venv/bin/drivesim demo out="$work/demo" "$@"
mkdir -p drivesim/assets/metric_cache
cp -r "$work/cache/features" "$work/cache/real" drivesim/assets/metric_cache/
ls -l drivesim/assets/metric_cache/*
