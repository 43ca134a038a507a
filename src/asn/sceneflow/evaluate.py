"""Score KITTI 2015 result PNGs against ground-truth PNGs: files or folders paired by name.

Each input is a single PNG or a folder of PNGs. With folders, the frames are the ``*.png``
names of the first-frame disparity ground-truth folder (as the devkit iterates over its
ground truth); every other folder must hold a file of the same name (KITTI names them
``000000_10.png`` in ``disp_noc_0/``, ``flow_noc/``, ``obj_map/`` and in the results'
``disp_0/``, ``disp_1/``, ``flow/``). Counts are pooled over all frames
(:func:`asn.sceneflow.metrics.pool_counts`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from asn.errors import AsnError, InputError
from asn.sceneflow import io
from asn.sceneflow.metrics import Counts, error_rates, frame_counts, pool_counts

# role -> what the role is called in messages (the command's option names)
ROLES = {"disp_gt": "--disp-gt", "disp_est": "--disp-est", "flow_gt": "--flow-gt",
         "flow_est": "--flow-est", "disp1_gt": "--disp1-gt", "disp1_est": "--disp1-est",
         "obj_map": "--obj-map"}


def pair_frames(paths: Mapping[str, str | os.PathLike | None]) -> list[dict[str, Path]]:
    """Role -> file or folder (None: not given) -> one {role: file} dict per frame.

    The first-frame disparity ground truth (``disp_gt``) decides: a file gives one frame, a
    folder one frame per ``*.png`` in it (sorted by name). The other inputs must be of the same
    kind; a missing partner file is reported when it is read.
    """
    given = {role: Path(p) for role, p in paths.items() if p is not None}
    if "disp_gt" not in given:
        raise AsnError("the first-frame disparity ground truth (--disp-gt) is required")
    if ("disp1_gt" in given) != ("disp1_est" in given):
        raise AsnError("--disp1-gt and --disp1-est must be given together")
    for role, path in given.items():
        if not path.exists():
            raise InputError(path, f"not found ({ROLES.get(role, role)})")
    anchor = given["disp_gt"]
    folders = anchor.is_dir()
    for role, path in given.items():
        if path.is_dir() != folders:
            want = "a folder" if folders else "a PNG file"
            raise InputError(path, f"{ROLES.get(role, role)} must be {want} like --disp-gt")
    if not folders:
        return [dict(given)]
    names = sorted(p.name for p in anchor.iterdir() if p.suffix.lower() == ".png" and p.is_file())
    if not names:
        raise InputError(anchor, "no PNG files in the folder")
    return [{role: path / name for role, path in given.items()} for name in names]


def read_frame(files: Mapping[str, Path]) -> dict:
    """Read one frame's PNGs and check that every map has the ground truth's size.

    Returns the keyword arguments of :func:`asn.sceneflow.metrics.frame_counts`.
    """
    disp_gt = io.read_disparity(files["disp_gt"])
    ref_path, ref_shape = files["disp_gt"], disp_gt[0].shape

    def checked(role: str, reader: Callable):
        data = reader(files[role])
        io.check_same_size(files[role], data[0].shape if isinstance(data, tuple) else data.shape,
                           ref_path, ref_shape)
        return data

    kwargs: dict = {"disp": (disp_gt, checked("disp_est", io.read_disparity))}
    if "flow_gt" in files:
        kwargs["flow"] = (checked("flow_gt", io.read_flow), checked("flow_est", io.read_flow))
    if "disp1_gt" in files:
        kwargs["disp1"] = (checked("disp1_gt", io.read_disparity),
                           checked("disp1_est", io.read_disparity))
    if "obj_map" in files:
        kwargs["obj_map"] = checked("obj_map", io.read_object_map)
    return kwargs


def evaluate_paths(paths: Mapping[str, str | os.PathLike | None]) -> dict:
    """Pooled KITTI 2015 errors of the frames given by ``paths`` (see :func:`pair_frames`).

    Returns ``{"frames": [names], "counts": pooled counts, "metrics": error_rates(counts)}``.
    """
    frames = pair_frames(paths)
    per_frame: list[Counts] = [frame_counts(**read_frame(files)) for files in frames]
    pooled = pool_counts(per_frame)
    return {"frames": [files["disp_gt"].name for files in frames], "counts": pooled,
            "metrics": error_rates(pooled)}
