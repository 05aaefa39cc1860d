"""Generation: the rollout engine (key frames, prediction, interpolation, decoding), its on-disk store
with exact resume, the output writers, and the `drivesim generate` runner."""
