"""The KINS category table (ids as in the public files) and the paper's experiment classes."""

from __future__ import annotations

# id -> (name, supercategory). Id 3 (rider / person-sitting) has 0 instances in the public
# files and is excluded from experiments, as in the paper.
KINS_CATEGORIES: dict[int, tuple[str, str]] = {
    1: ("cyclist", "people"),
    2: ("pedestrian", "people"),
    3: ("person-sitting", "people"),
    4: ("car", "vehicle"),
    5: ("tram", "vehicle"),
    6: ("truck", "vehicle"),
    7: ("van", "vehicle"),
    8: ("misc", "vehicle"),
}

# The 7 classes the paper trains and evaluates on.
EXPERIMENT_CATEGORY_IDS: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 8)


def coco_categories(ids: tuple[int, ...] | list[int] = tuple(KINS_CATEGORIES)) -> list[dict]:
    """COCO ``categories`` entries for the given KINS ids."""
    return [
        {"id": i, "name": KINS_CATEGORIES[i][0], "supercategory": KINS_CATEGORIES[i][1]}
        for i in ids
    ]
