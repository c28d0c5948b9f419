"""The held-back instruction phrasings are never trained on."""

from mmembed.instructions import list_tasks
from mmembed.train.phrasings import HELD_OUT, TRAIN, normalise


def test_held_out_phrasings_are_not_in_training():
    trained = {normalise(p) for ps in TRAIN.values() for p in ps}
    trained |= {normalise(p) for t in list_tasks() for p in t.instructions}
    for kind, held in HELD_OUT.items():
        assert kind in TRAIN
        for p in held:
            assert normalise(p) not in trained, f"held-back phrasing {p!r} ({kind}) is also a training phrasing"


def test_lists_have_no_duplicates():
    for lists in (TRAIN, HELD_OUT):
        for kind, ps in lists.items():
            assert len({normalise(p) for p in ps}) == len(ps), kind
