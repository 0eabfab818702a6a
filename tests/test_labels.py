"""Every dataset's label map against the published orders (spec: datasets.md §3.8)."""

import numpy as np
import pytest

from lionfer import labels as L

CANON = {name: i for i, name in enumerate(L.SHORT_NAMES)}  # SU 0 … NE 6, CO 7


def expect(order: str) -> dict[int, int]:
    """A dataset's order as short names, position = its id → canonical ids."""
    return {i: CANON[name] for i, name in enumerate(order.split())}


@pytest.mark.parametrize(
    ("table", "order", "offset"),
    [
        (L.RAFDB_FILE, "SU FE DI HA SA AN NE", 1),
        (L.RAFDB_ZERO, "SU FE DI HA SA AN NE", 0),
        (L.AFFECTNET, "NE HA SA SU FE DI AN CO", 0),
        (L.FER2013, "AN DI FE HA SA SU NE", 0),
        (L.EXPW, "AN DI FE HA SA SU NE", 0),
        (L.FERPLUS, "NE HA SU SA AN DI FE CO", 0),
        (L.CKPLUS, "NE AN CO DI FE HA SA SU", 0),
    ],
)
def test_maps_match_the_published_orders(table, order, offset):
    published = {k + offset: v for k, v in expect(order).items()}
    assert {k: v for k, v in table.items() if v != L.DROP} == published


def test_affectnet_drops_none_uncertain_nonface_and_contempt_in_7_classes():
    assert L.to_canonical([0, 3, 7, 8, 9, 10], L.AFFECTNET, 7).tolist() == [6, 0, -1, -1, -1, -1]
    assert L.to_canonical([7], L.AFFECTNET, 8).tolist() == [7]


def test_round_trip_and_errors():
    ids = np.arange(1, 8)
    assert (
        L.from_canonical(L.to_canonical(ids, L.RAFDB_FILE), L.RAFDB_FILE).tolist() == ids.tolist()
    )
    with pytest.raises(ValueError, match="label id 0"):
        L.to_canonical([0], L.RAFDB_FILE)
    assert L.SFEW_FOLDERS["Angry"] == 5 and L.SFEW_FOLDERS["Neutral"] == 6
    assert L.class_from_name("Happy") == 3 and L.class_from_name(" SU ") == 0
    with pytest.raises(ValueError, match="class_map"):
        L.class_from_name("bored")
    assert L.class_names(8)[-1] == "Contempt"
