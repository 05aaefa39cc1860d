"""The label and object-class vocabularies shared by the data (clips) and the model (conditioning).

One definition so that a clip's label index and the label embedding's row always mean the same
thing. Index 0 of every vocabulary is "unknown" (labels) or "other" (classes); new names are
appended, never reordered, so trained embeddings keep their meaning.
"""

from __future__ import annotations

#: Scene labels per name; index 0 is "unknown". Clips store these indices; `VideoCondition.labels`
#: stores index - 1 (so unknown is -1).
LABEL_VOCAB: dict[str, tuple[str, ...]] = {
    "time_of_day": ("unknown", "day", "night", "dusk"),
    "weather": ("unknown", "clear", "rain", "fog"),
    "crowdedness": ("unknown", "sparse", "crowded", "moderate"),
}
LABEL_NAMES: tuple[str, ...] = tuple(LABEL_VOCAB)

#: Object classes (the nuScenes detection classes); index 0 collects every other category.
CLASSES: tuple[str, ...] = (
    "other", "car", "truck", "bus", "trailer", "construction_vehicle",
    "pedestrian", "motorcycle", "bicycle", "traffic_cone", "barrier",
)
