"""Torch side of the normalized ground truth: Dataset, grouped batch sampler, collate, loader.

Reads the pair ``<gt_dir>/<split>_amodal.json`` / ``<split>_inmodal.json`` written by
``asn convert`` (DESIGN.md 2) plus the split's image folder, and serves torchvision-style
training targets with both mask sets (the keys the model's ``validate_targets`` expects),
with :func:`occlusion_ratios_from_masks` (the paper's ratio on mask tensors) for files that carry
no ``occlusion_ratio``.

Reproducibility contract:

- :class:`GroupedBatchSampler` yields *global* batches of ``(index, aug_seed)`` pairs; the
  stream is a pure function of ``(aspect_ratios, batch_size, seed)``, so training resumes
  exactly from any iteration, and a DDP rank takes a fixed contiguous piece of the same
  global batch.
- :class:`AmodalDataset` derives its random augmentation from the ``aug_seed`` it is handed,
  never from worker-local RNG state, so a batch does not depend on the number of workers.
- :func:`build_loader` turns an :class:`~asn.errors.InputError` raised inside a worker
  process into the same one-line error in the main process.
- :func:`data_hash` fingerprints the ground truth and the image folder cheaply (names and
  byte sizes of the images, not their content) for pipeline caching.
"""

from __future__ import annotations

import hashlib
import math
import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch import Tensor

from asn.data import rle as rle_ops
from asn.errors import InputError
from asn.io import read_json


def gt_paths(gt_dir: str | Path, split: str) -> tuple[Path, Path]:
    """The normalized ground-truth pair of a split: (amodal file, inmodal file)."""
    gt_dir = Path(gt_dir)
    return gt_dir / f"{split}_amodal.json", gt_dir / f"{split}_inmodal.json"


# --------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------


def _ann_record(ann: dict) -> str:
    return f"image {ann.get('image_id')}, annotation {ann.get('id')}"


def _require_list(data: Any, key: str, path: Path) -> list:
    if not isinstance(data, dict):
        raise InputError(path, f"expected a COCO JSON object, got {type(data).__name__}")
    value = data.get(key)
    if not isinstance(value, list):
        raise InputError(path, f"missing or malformed {key!r} list (not a COCO file?)")
    return value


def _ids(records: list, path: Path, what: str) -> list:
    """The ``id`` of every record, refusing records without one and duplicates."""
    ids = []
    for k, rec in enumerate(records):
        if not isinstance(rec, dict) or "id" not in rec:
            raise InputError(path, "has no 'id'", record=f"{what} #{k}")
        ids.append(rec["id"])
    if len(set(ids)) != len(ids):
        seen: set = set()
        dup = next(i for i in ids if i in seen or seen.add(i))
        raise InputError(path, f"{what} id {dup} appears more than once")
    return ids


def _describe_difference(a: list, b: list) -> str:
    only_a, only_b = sorted(set(a) - set(b), key=str), sorted(set(b) - set(a), key=str)
    parts = []
    if only_a:
        parts.append(f"{len(only_a)} only in the amodal file (first {only_a[0]})")
    if only_b:
        parts.append(f"{len(only_b)} only in the inmodal file (first {only_b[0]})")
    return "; ".join(parts) or "same ids in another order"


def _segmentation_to_rle(segm: Any, height: int, width: int, path: Path, record: str) -> dict:
    """One annotation's segmentation as a compressed pycocotools RLE (bytes counts).

    Accepts what ``pycocotools.coco.COCO.annToRLE`` accepts: polygons (list of flat
    coordinate lists, parts merged), uncompressed RLE (``counts`` a list of run lengths) and
    compressed RLE (``counts`` a str/bytes). RLE run lengths are checked to cover exactly
    height x width pixels: pycocotools decodes them without bounds checks.
    """
    if isinstance(segm, list):
        if not segm:
            return mask_utils.encode(np.zeros((height, width, 1), np.uint8, order="F"))[0]
        for part in segm:
            # frPyObjects reads a 4-number "polygon" as a box; < 3 points is no area anyway
            if (not isinstance(part, list) or len(part) < 6 or len(part) % 2
                    or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in part)):
                raise InputError(path, "polygon must be a list of an even number (>= 6) of "
                                 "finite coordinates", record=record)
        return mask_utils.merge(mask_utils.frPyObjects(segm, height, width))
    if not isinstance(segm, dict) or "counts" not in segm or "size" not in segm:
        raise InputError(path, "segmentation must be polygons or an RLE dict with 'size' and "
                         f"'counts', got {type(segm).__name__}", record=record)
    if list(segm["size"]) != [height, width]:
        raise InputError(path, f"RLE size {list(segm['size'])} differs from the image size "
                         f"[{height}, {width}] (height, width)", record=record)
    counts = segm["counts"]
    if isinstance(counts, list):
        if (not all(isinstance(c, int) and c >= 0 for c in counts)
                or sum(counts) != height * width):
            raise InputError(path, "uncompressed RLE counts must be non-negative ints summing "
                             f"to {height * width} (height x width)", record=record)
        return mask_utils.frPyObjects(segm, height, width)
    if isinstance(counts, bytes):
        counts = counts.decode("ascii", errors="replace")
    if not isinstance(counts, str):
        raise InputError(path, f"RLE counts must be a string or a list, got "
                         f"{type(counts).__name__}", record=record)
    try:
        runs = rle_ops.string_to_counts(counts)
        valid = bool((runs >= 0).all()) and int(runs.sum()) == height * width
    except (ValueError, IndexError, UnicodeEncodeError):
        valid = False
    if not valid:
        raise InputError(path, "compressed RLE counts are corrupt (runs do not cover "
                         f"{height}x{width} pixels)", record=record)
    return {"size": [height, width], "counts": counts.encode("ascii")}


def _decode_masks(rles: list[dict], height: int, width: int) -> Tensor:
    """N compressed RLEs -> (N, H, W) uint8 tensor (N may be 0)."""
    if not rles:
        return torch.zeros((0, height, width), dtype=torch.uint8)
    # decode gives a Fortran-ordered (H, W, N) array; its (N, W, H) transpose is C-ordered,
    # so one copy (the final .contiguous()) produces (N, H, W)
    decoded = mask_utils.decode(rles)
    return torch.from_numpy(np.ascontiguousarray(decoded.transpose(2, 1, 0))).transpose(1, 2).contiguous()


def occlusion_ratios_from_masks(amodal_masks: Tensor, inmodal_masks: Tensor) -> Tensor:
    """Occlusion ratio of each instance, ``1 - area(inmodal) / area(amodal)``.

    Args:
        amodal_masks: (N, H, W) uint8/bool.
        inmodal_masks: (N, H, W) uint8/bool, same shape.
    Returns:
        (N,) float32 in [0, 1]; an instance with an empty amodal mask gets 0 (nothing hidden
        can be measured), N = 0 gives an empty tensor.
    """
    if amodal_masks.shape[0] == 0:
        return torch.zeros((0,), dtype=torch.float32, device=amodal_masks.device)
    amodal_area = amodal_masks.flatten(1).ne(0).sum(1).float()
    # the visible part is by definition inside the amodal mask; intersecting guards
    # against annotations where it pokes out by a pixel
    visible_area = (amodal_masks.ne(0) & inmodal_masks.ne(0)).flatten(1).sum(1).float()
    ratios = 1.0 - visible_area / amodal_area.clamp(min=1.0)
    return torch.where(amodal_area > 0, ratios, torch.zeros_like(ratios)).clamp(0.0, 1.0)


class AmodalDataset(torch.utils.data.Dataset):
    """The normalized ground truth of one split as a torch Dataset.

    ``dataset[i]`` or ``dataset[(i, aug_seed)]`` returns ``(image, target)``:

    - image: (3, H, W) float32 in [0, 1];
    - target: ``image_id`` int64 0-d, ``boxes`` (N, 4) float32 amodal xyxy, ``labels`` (N,)
      int64 in 1..K, ``amodal_masks`` / ``inmodal_masks`` (N, H, W) uint8,
      ``occlusion_ratios`` (N,) float32. Crowd annotations and categories outside
      ``category_ids`` are left out.

    With a tuple key and ``flip_prob > 0`` the image, both mask sets and the boxes are flipped
    horizontally when ``numpy.random.default_rng(aug_seed).random() < flip_prob``; an int key
    never augments (evaluation).

    Args:
        gt_dir: folder with ``<split>_amodal.json`` and ``<split>_inmodal.json``.
        split: split name, e.g. ``train``.
        images_dir: folder holding every image's ``file_name``.
        category_ids: KINS category ids to train on, in label order (label k = k-th id);
            default: the amodal file's categories, ascending.
        flip_prob: probability of a horizontal flip for tuple keys.
    """

    def __init__(
        self,
        gt_dir: str | Path,
        split: str,
        images_dir: str | Path,
        *,
        category_ids: Sequence[int] | None = None,
        flip_prob: float = 0.0,
    ):
        if not 0.0 <= float(flip_prob) <= 1.0:
            raise ValueError(f"flip_prob must be in [0, 1], got {flip_prob}")
        self.flip_prob = float(flip_prob)
        self.split = split
        self.images_dir = Path(images_dir)
        self.amodal_path, self.inmodal_path = gt_paths(gt_dir, split)
        amodal = read_json(self.amodal_path)
        inmodal = read_json(self.inmodal_path)
        a_images = _require_list(amodal, "images", self.amodal_path)
        i_images = _require_list(inmodal, "images", self.inmodal_path)
        a_anns = _require_list(amodal, "annotations", self.amodal_path)
        i_anns = _require_list(inmodal, "annotations", self.inmodal_path)
        categories = _require_list(amodal, "categories", self.amodal_path)

        image_ids = _ids(a_images, self.amodal_path, "image")
        if set(image_ids) != set(_ids(i_images, self.inmodal_path, "image")):
            raise InputError(self.inmodal_path, "image ids differ from those of "
                             f"{self.amodal_path.name}: "
                             f"{_describe_difference(image_ids, [r['id'] for r in i_images])}")
        a_ann_ids = _ids(a_anns, self.amodal_path, "annotation")
        i_ann_ids = _ids(i_anns, self.inmodal_path, "annotation")
        if set(a_ann_ids) != set(i_ann_ids):
            raise InputError(self.inmodal_path, "annotation ids differ from those of "
                             f"{self.amodal_path.name}: "
                             f"{_describe_difference(a_ann_ids, i_ann_ids)}")

        self._set_categories(categories, category_ids)
        self._images: list[dict] = []
        for rec in a_images:
            self._check_image_record(rec)
            self._images.append(rec)
        self.image_ids: list = [rec["id"] for rec in self._images]
        self.aspect_ratios: list[float] = [rec["width"] / rec["height"] for rec in self._images]
        self._index = self._build_index(a_anns, i_anns)

    # -- construction helpers ----------------------------------------------------------------

    def _set_categories(self, categories: list, category_ids: Sequence[int] | None) -> None:
        names = {}
        for k, cat in enumerate(categories):
            if not isinstance(cat, dict) or "id" not in cat:
                raise InputError(self.amodal_path, "category has no 'id'", record=f"category #{k}")
            names[cat["id"]] = str(cat.get("name", cat["id"]))
        if category_ids is None:
            category_ids = sorted(names)
        category_ids = [int(c) for c in category_ids]
        if len(set(category_ids)) != len(category_ids):
            raise ValueError(f"category_ids has duplicates: {category_ids}")
        if not category_ids:
            raise InputError(self.amodal_path, "no categories to train on (empty 'categories' "
                             "and no category_ids given)")
        unknown = [c for c in category_ids if c not in names]
        if unknown:
            raise InputError(self.amodal_path, f"category ids {unknown} are not among its "
                             f"categories {sorted(names)}")
        self.category_ids: list[int] = category_ids
        self.class_names: list[str] = [names[c] for c in category_ids]
        self.category_to_label: dict[int, int] = {c: k + 1 for k, c in enumerate(category_ids)}
        self.label_to_category: dict[int, int] = {k + 1: c for k, c in enumerate(category_ids)}

    def _check_image_record(self, rec: dict) -> None:
        record = f"image {rec.get('id')}"
        if not isinstance(rec["id"], int) or isinstance(rec["id"], bool):
            raise InputError(self.amodal_path, f"image id must be an int, got {rec['id']!r}",
                             record=record)
        if not isinstance(rec.get("file_name"), str) or not rec["file_name"]:
            raise InputError(self.amodal_path, "missing 'file_name'", record=record)
        for key in ("width", "height"):
            value = rec.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise InputError(self.amodal_path, f"{key!r} must be a positive int, got "
                                 f"{value!r}", record=record)

    def _build_index(self, a_anns: list, i_anns: list) -> dict[Any, list[tuple[dict, dict]]]:
        """image_id -> [(amodal_ann, inmodal_ann), ...] of the kept annotations (file order).

        Only cheap per-annotation checks run here (keys, box, ratio); segmentations are
        validated and decoded per item, so building the index of KINS stays well under a
        second and no mask is held in memory.
        """
        inmodal_by_id = {ann["id"]: ann for ann in i_anns}
        index: dict[Any, list[tuple[dict, dict]]] = {iid: [] for iid in self.image_ids}
        for a_ann in a_anns:
            i_ann = inmodal_by_id[a_ann["id"]]
            record = _ann_record(a_ann)
            for key in ("image_id", "category_id", "bbox", "segmentation"):
                if key not in a_ann:
                    raise InputError(self.amodal_path, f"missing {key!r}", record=record)
                if key != "bbox" and key not in i_ann:
                    raise InputError(self.inmodal_path, f"missing {key!r}", record=record)
            if a_ann["image_id"] not in index:
                raise InputError(self.amodal_path, "refers to an image id that is not in "
                                 "'images'", record=record)
            if (i_ann["image_id"], i_ann["category_id"]) != (a_ann["image_id"], a_ann["category_id"]):
                raise InputError(self.inmodal_path, "image_id/category_id differ from the "
                                 "amodal file's annotation with the same id", record=record)
            if a_ann.get("iscrowd", 0) or a_ann["category_id"] not in self.category_to_label:
                continue
            box = a_ann["bbox"]
            if (not isinstance(box, list) or len(box) != 4
                    or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in box)
                    or box[2] <= 0 or box[3] <= 0):
                raise InputError(self.amodal_path, f"bbox must be [x, y, w, h] with w, h > 0, "
                                 f"got {box!r}", record=record)
            ratio = a_ann.get("occlusion_ratio", i_ann.get("occlusion_ratio"))
            if ratio is not None and not (isinstance(ratio, (int, float)) and 0.0 <= ratio <= 1.0):
                raise InputError(self.amodal_path, f"occlusion_ratio must be in [0, 1], got "
                                 f"{ratio!r}", record=record)
            index[a_ann["image_id"]].append((a_ann, i_ann))
        return index

    # -- public API ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._images)

    def image_info(self, index: int) -> dict:
        """The image record (``id``, ``file_name``, ``width``, ``height``, ...) of an index."""
        return dict(self._images[index])

    def image_path(self, index: int) -> Path:
        """Where the image of ``index`` is read from."""
        return self.images_dir / self._images[index]["file_name"]

    def num_annotations(self, index: int) -> int:
        """How many instances the target of ``index`` has (without decoding anything)."""
        return len(self._index[self._images[index]["id"]])

    def label_map(self) -> dict:
        """JSON-serialisable label <-> category table to store next to a checkpoint.

        ``label_of_category`` has string keys (JSON object keys are strings), so the dict
        survives a JSON round trip unchanged.
        """
        return {
            "category_ids": list(self.category_ids),
            "names": list(self.class_names),
            "label_of_category": {str(c): k for c, k in self.category_to_label.items()},
        }

    def check_images(self) -> None:
        """Verify every image file exists and has the annotated size, before training.

        Reads only the image headers (PIL opens lazily), so it is cheap on KITTI; content
        corruption past the header is still found when the item is loaded.
        Raises InputError(path, reason, record="image <id>") for the first bad image.
        """
        for k in range(len(self)):
            self._read_image(k, decode=False)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Tensor, dict[str, Tensor]]:
        if isinstance(key, tuple):
            if len(key) != 2:
                raise TypeError(f"key must be an index or (index, aug_seed), got {key!r}")
            index, aug_seed = operator.index(key[0]), operator.index(key[1])
        else:
            index, aug_seed = operator.index(key), None
        n = len(self._images)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} images")
        index %= n
        info = self._images[index]
        image = self._load_image(index)
        target = self._target(info)
        if aug_seed is not None and self.flip_prob > 0.0:
            rng = np.random.default_rng(aug_seed)
            if rng.random() < self.flip_prob:
                image, target = hflip(image, target)
        return image, target

    # -- item helpers ----------------------------------------------------------------------

    @staticmethod
    def _check_size(path: Path, record: str, size: tuple[int, int], info: dict) -> None:
        if size != (info["width"], info["height"]):
            raise InputError(path, f"image is {size[0]}x{size[1]}, the annotation file says "
                             f"{info['width']}x{info['height']}", record=record)

    def _read_image(self, index: int, decode: bool = True) -> np.ndarray | None:
        """The image as (H, W, 3) uint8 (``decode=False``: header and size check only).

        A missing, unreadable or wrongly sized file raises InputError naming path and image.
        """
        from PIL import Image

        info = self._images[index]
        path = self.image_path(index)
        record = f"image {info['id']}"
        if not path.is_file():
            raise InputError(path, "image file not found", record=record)
        try:
            with Image.open(path) as im:
                # check the header size before paying for the decode
                self._check_size(path, record, im.size, info)
                # np.array copies (PIL's buffer is read-only, torch wants writable memory)
                return np.array(im.convert("RGB")) if decode else None
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - PIL raises many types for corrupt files
            raise InputError(path, f"cannot read image ({exc})", record=record) from None

    def _load_image(self, index: int) -> Tensor:
        """(3, H, W) float32 in [0, 1]; bad files raise InputError naming path and image."""
        array = self._read_image(index)
        # one pass: HWC uint8 -> contiguous CHW float32
        image = torch.from_numpy(array).permute(2, 0, 1).to(torch.float32,
                                                              memory_format=torch.contiguous_format)
        return image.div_(255.0)

    def _target(self, info: dict) -> dict[str, Tensor]:
        height, width = info["height"], info["width"]
        pairs = self._index[info["id"]]
        a_rles, i_rles = [], []
        for a_ann, i_ann in pairs:
            record = _ann_record(a_ann)
            a_rles.append(_segmentation_to_rle(a_ann["segmentation"], height, width,
                                               self.amodal_path, record))
            i_rles.append(_segmentation_to_rle(i_ann["segmentation"], height, width,
                                               self.inmodal_path, record))
        amodal_masks = _decode_masks(a_rles, height, width)
        inmodal_masks = _decode_masks(i_rles, height, width)
        boxes = torch.tensor([a["bbox"] for a, _ in pairs], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy
        labels = torch.tensor([self.category_to_label[a["category_id"]] for a, _ in pairs],
                              dtype=torch.int64)
        ratios = [a.get("occlusion_ratio", i.get("occlusion_ratio")) for a, i in pairs]
        if any(r is None for r in ratios):
            # not an `asn convert` file: the paper's definition on the decoded masks
            computed = occlusion_ratios_from_masks(amodal_masks, inmodal_masks).tolist()
            ratios = [c if r is None else r for r, c in zip(ratios, computed)]
        return {
            "image_id": torch.tensor(info["id"], dtype=torch.int64),
            "boxes": boxes,
            "labels": labels,
            "amodal_masks": amodal_masks,
            "inmodal_masks": inmodal_masks,
            "occlusion_ratios": torch.tensor(ratios, dtype=torch.float32),
        }


def hflip(image: Tensor, target: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
    """Horizontal flip of an image and its target (returns new tensors).

    image: (3, H, W); target ``boxes`` (N, 4) xyxy become (W - x2, y1, W - x1, y2), and
    ``amodal_masks`` / ``inmodal_masks`` (N, H, W) are mirrored like the image.
    """
    width = image.shape[-1]
    out = dict(target)
    for key in ("amodal_masks", "inmodal_masks", "masks"):
        if key in target:
            out[key] = target[key].flip(-1)
    if "boxes" in target:
        boxes = target["boxes"].clone()
        boxes[:, 0] = width - target["boxes"][:, 2]
        boxes[:, 2] = width - target["boxes"][:, 0]
        out["boxes"] = boxes
    return image.flip(-1), out


# --------------------------------------------------------------------------------------------
# Sampler
# --------------------------------------------------------------------------------------------


def aug_seed(seed: int, epoch: int, position: int) -> int:
    """The augmentation seed of the item at ``position`` of ``epoch``'s permutation."""
    return int(np.random.SeedSequence([seed, epoch, position]).generate_state(1)[0])


class GroupedBatchSampler:
    """Infinite, seeded, aspect-ratio grouped batch sampler of ``(index, aug_seed)`` lists.

    Epoch e visits the images in the order of ``numpy.random.default_rng([seed, e])``'s
    permutation; each goes to the group of wide (aspect ratio >= 1) or tall (< 1) images, and
    a group emits a global batch as soon as it holds ``batch_size`` items. Leftovers carry
    over into the next epoch (detectron2's AspectRatioGroupedDataset). The item at position p
    of epoch e gets ``aug_seed = SeedSequence([seed, e, p]).generate_state(1)[0]``.

    The stream of global batches is a pure function of (aspect_ratios, batch_size, seed).
    ``start_iteration=k`` starts at global batch k (the skipped part is replayed on index
    lists only, whole epochs at a time). With ``num_parts > 1`` each global batch is cut into
    ``num_parts`` equal contiguous pieces and only piece ``part`` is yielded: DDP rank r uses
    ``part=r, num_parts=world_size`` and the ranks together see exactly the global batch.
    """

    def __init__(
        self,
        aspect_ratios: Sequence[float],
        batch_size: int,
        *,
        seed: int,
        start_iteration: int = 0,
        part: int = 0,
        num_parts: int = 1,
    ):
        ratios = np.asarray(aspect_ratios, dtype=np.float64).reshape(-1)
        if ratios.size == 0:
            raise ValueError("aspect_ratios is empty: the dataset has no images")
        if not (np.isfinite(ratios).all() and (ratios > 0).all()):
            raise ValueError("aspect_ratios must be finite and > 0 (width / height per image)")
        for name, value, low in (("batch_size", batch_size, 1), ("num_parts", num_parts, 1),
                                 ("seed", seed, 0), ("start_iteration", start_iteration, 0),
                                 ("part", part, 0)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if part >= num_parts:
            raise ValueError(f"part must be in 0..{num_parts - 1} (num_parts={num_parts}), got {part}")
        if batch_size % num_parts:
            raise ValueError(f"batch_size {batch_size} is not divisible by num_parts {num_parts}: "
                             "each part must get the same number of images")
        self._wide = ratios >= 1.0
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.start_iteration = int(start_iteration)
        self.part = int(part)
        self.num_parts = int(num_parts)

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self._wide))

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        batch_size = self.batch_size
        to_skip = self.start_iteration
        # pending items per group as (index, epoch, position); aug seeds are derived only for
        # the items actually yielded, so skipping stays cheap
        carry: dict[bool, list[tuple[int, int, int]]] = {True: [], False: []}
        piece = batch_size // self.num_parts
        lo, hi = self.part * piece, (self.part + 1) * piece
        epoch = 0
        while True:
            perm = self._permutation(epoch)
            wide = self._wide[perm]
            if to_skip:
                counts = {True: int(wide.sum()), False: int((~wide).sum())}
                emitted = sum((len(carry[g]) + counts[g]) // batch_size for g in carry)
                if emitted <= to_skip:
                    # the whole epoch is skipped: only the leftovers of each group matter
                    to_skip -= emitted
                    for g in carry:
                        carry[g] = self._leftover(carry[g], perm, wide == g, epoch)
                    epoch += 1
                    continue
            for position, (index, is_wide) in enumerate(zip(perm.tolist(), wide.tolist())):
                group = carry[is_wide]
                group.append((index, epoch, position))
                if len(group) == batch_size:
                    carry[is_wide] = []
                    if to_skip:
                        to_skip -= 1
                        continue
                    yield [(i, aug_seed(self.seed, e, p)) for i, e, p in group[lo:hi]]
            epoch += 1

    def _leftover(self, pending: list, perm: np.ndarray, in_group: np.ndarray,
                  epoch: int) -> list[tuple[int, int, int]]:
        """What a group holds after a whole epoch: the tail (len % batch_size) of
        pending + the epoch's items of the group."""
        positions = np.flatnonzero(in_group)
        total = len(pending) + len(positions)
        consumed = total - total % self.batch_size
        if consumed == 0:  # no batch emitted: everything stays
            return pending + [(int(perm[p]), epoch, int(p)) for p in positions]
        # pending is shorter than a batch, so a batch was emitted only if it was consumed
        return [(int(perm[p]), epoch, int(p)) for p in positions[consumed - len(pending):]]


# --------------------------------------------------------------------------------------------
# Collate and loader
# --------------------------------------------------------------------------------------------


def collate(batch: Sequence[tuple[Tensor, dict]]) -> tuple[list[Tensor], list[dict]]:
    """[(image, target), ...] -> (list of images, list of targets); images keep their sizes."""
    return [item[0] for item in batch], [item[1] for item in batch]


@dataclass(frozen=True)
class _LoadFailure:
    """A picklable stand-in for an InputError raised while loading an item in a worker.

    torch re-raises worker exceptions as a multi-line RuntimeError with the worker's
    traceback; passing the error's fields back as data keeps the user's one-line message.
    """

    file: str | None
    reason: str
    record: str | None

    def error(self) -> InputError:
        return InputError(self.file, self.reason, record=self.record)


class _Guarded(torch.utils.data.Dataset):
    """Wraps a dataset: an InputError while loading becomes a returned _LoadFailure."""

    def __init__(self, dataset: torch.utils.data.Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        try:
            return self.dataset[key]
        except InputError as exc:
            return _LoadFailure(exc.file, exc.reason, exc.record)


def _guarded_collate(batch: Sequence) -> Any:
    for item in batch:
        if isinstance(item, _LoadFailure):
            return item
    return collate(batch)


def _worker_init(worker_id: int) -> None:
    # each worker decodes one image at a time: intra-op threads would only oversubscribe
    torch.set_num_threads(1)


class Loader:
    """Iterable of ``(images, targets)`` batches over a DataLoader (see :func:`build_loader`).

    Raises the dataset's InputError (one line: file, image, reason) in the main process, also
    when it happened in a worker; worker processes are shut down first.
    """

    def __init__(self, dataloader: torch.utils.data.DataLoader):
        self.dataloader = dataloader

    def __iter__(self) -> Iterator[tuple[list[Tensor], list[dict]]]:
        for batch in self.dataloader:
            if isinstance(batch, _LoadFailure):
                self.close()
                raise batch.error()
            yield batch

    def close(self) -> None:
        """Stop persistent worker processes now (they would otherwise live until the loader
        is garbage collected)."""
        iterator = getattr(self.dataloader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
        self.dataloader._iterator = None

    def __enter__(self) -> "Loader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def build_loader(
    dataset: torch.utils.data.Dataset,
    batch_sampler: Any,
    *,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> Loader:
    """Batches ``(list of images, list of targets)`` of ``dataset`` in the order of
    ``batch_sampler`` (e.g. a :class:`GroupedBatchSampler`); identical for any num_workers.

    Workers are persistent (no restart cost between passes) and single-threaded.
    """
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}")
    dataloader = torch.utils.data.DataLoader(
        _Guarded(dataset),
        batch_sampler=batch_sampler,
        collate_fn=_guarded_collate,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        worker_init_fn=_worker_init if num_workers > 0 else None,
        pin_memory=pin_memory,
    )
    return Loader(dataloader)


# --------------------------------------------------------------------------------------------
# Data hash
# --------------------------------------------------------------------------------------------


def data_hash(gt_dir: str | Path, split: str, images_dir: str | Path) -> str:
    """sha256 hex of a split's ground truth and images, for caching trained models.

    Covers the bytes of both JSON files and, for every image in the amodal file's order, its
    ``file_name`` and byte size. Not image content and not mtimes: cheap on 7,474 KITTI
    images and equal on a fresh copy of the same data. A missing image raises InputError.
    """
    images_dir = Path(images_dir)
    digest = hashlib.sha256(b"asn-data-hash-v1\0")
    amodal_path, inmodal_path = gt_paths(gt_dir, split)
    for path in (amodal_path, inmodal_path):
        try:
            data = path.read_bytes()
        except OSError:
            raise InputError(path, "file not found") from None
        # length-prefixed fields: no two different inputs concatenate to the same stream
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    for k, rec in enumerate(_require_list(read_json(amodal_path), "images", amodal_path)):
        name = rec.get("file_name") if isinstance(rec, dict) else None
        if not isinstance(name, str):
            raise InputError(amodal_path, "missing 'file_name'", record=f"image #{k}")
        path = images_dir / name
        try:
            size = path.stat().st_size
        except OSError:
            raise InputError(path, "image file not found", record=f"image {rec.get('id')}") from None
        encoded = name.encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "little"))
        digest.update(encoded)
        digest.update(size.to_bytes(8, "little"))
    return digest.hexdigest()
