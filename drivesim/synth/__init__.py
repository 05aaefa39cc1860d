"""The procedural driving world: the embedded default, written as a nuScenes-format dataset."""
