"""One vocabulary: the synthetic world's labels, the clip labels and the label embedding agree."""

from __future__ import annotations

from drivesim.config.conditioning import ConditionOptions
from drivesim.data.labels import parse_description
from drivesim.synth import style
from drivesim.vocab import CLASSES, LABEL_VOCAB


def test_every_synthetic_label_is_in_the_shared_vocabulary() -> None:
    for name, values in (("time_of_day", style.TIMES_OF_DAY), ("weather", style.WEATHERS),
                         ("crowdedness", style.CROWDEDNESS)):
        assert set(values) <= set(LABEL_VOCAB[name][1:]), name


def test_condition_encoder_sizes_follow_the_vocabulary() -> None:
    options = ConditionOptions()
    assert options.label_vocab_sizes == tuple(len(v) - 1 for v in LABEL_VOCAB.values())
    assert options.num_box_classes == len(CLASSES)


def test_unknown_words_give_unknown_labels() -> None:
    labels = parse_description("Parking lot, construction zone")
    assert (labels.time_of_day, labels.weather, labels.crowdedness) == (0, 0, 0)
