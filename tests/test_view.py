"""`asn view`: the static site's files and data (masks as RLE, the scene order, per-image numbers),
and the site opened in a real headless Chromium, from file:// and from Python's HTTP server on
127.0.0.1: the picture and the masks are drawn (the painted pixels equal the masks' union computed
here, so the browser's RLE decoding is exact) and a toggle changes them. The browser tests skip,
saying so, only when no Chromium binary is found (.ci/run installs Debian's
chromium-headless-shell)."""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import subprocess
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from engine_helpers import asn

BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome", "chrome")


def find_chromium() -> str | None:
    """$ASN_CHROMIUM, else the first Chromium-family binary on PATH."""
    explicit = os.environ.get("ASN_CHROMIUM")
    if explicit:
        return explicit
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


CHROMIUM = find_chromium()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium binary (chromium-headless-shell / chromium) on PATH: "
                             "apt-get install chromium-headless-shell, or set ASN_CHROMIUM")


def browser(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
               "--virtual-time-budget=15000", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def body_data(url: str) -> dict[str, str]:
    """The ``data-*`` attributes of <body> after the page ran (the viewer writes what it drew there)."""
    proc = browser("--dump-dom", url)
    match = re.search(r"<body([^>]*)>", proc.stdout)
    assert match, (proc.stdout[-2000:], proc.stderr[-2000:])
    return {k: v for k, v in re.findall(r'data-([a-z0-9-]+)="([^"]*)"', match.group(1))}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A tiny world (3 test images with pictures), its ground truth fed back as a run, and the site."""
    from asn.data.convert import convert
    from asn.data.synthetic import synthesize
    from asn.eval.order import segmentation_rle
    from asn.io import read_json, write_json_atomic

    root = tmp_path_factory.mktemp("view")
    synthesize(root / "raw", n_train=0, n_test=3, seed=2, width=320, height=96, workers=1, progress=False)
    images = root / "raw" / "testing" / "image_2"
    convert(root / "raw" / "update_test_2020.json", root / "gt", "test", images_dir=images, workers=1)
    amodal, inmodal = read_json(root / "gt" / "test_amodal.json"), read_json(root / "gt" / "test_inmodal.json")
    sizes = {img["id"]: (img["height"], img["width"]) for img in amodal["images"]}
    inmodal_by_id = {a["id"]: a for a in inmodal["annotations"]}
    predictions = []
    for ann in amodal["annotations"]:
        h, w = sizes[ann["image_id"]]
        rle = segmentation_rle(ann["segmentation"], h, w)
        predictions.append({"image_id": ann["image_id"], "category_id": ann["category_id"], "bbox": ann["bbox"],
                            "score": 0.9, "segmentation": {"size": [h, w], "counts": rle["counts"].decode()},
                            "inmodal_segmentation": inmodal_by_id[ann["id"]]["segmentation"],
                            "occlusion_score": 0.0})
    run = root / "eval" / "truth"
    write_json_atomic(run / "predictions.json", predictions)
    write_json_atomic(run / "metrics.json", {"amodal_ap": 100.0, "order_pair_accuracy": 100.0})
    out = root / "site"
    proc = asn("view", "--gt", str(root / "gt"), "--images", str(images), "--run", str(run), "--out", str(out),
               "--figures", "1", "--figures-out", str(root / "figures"))
    assert "open file://" in proc.stderr
    return {"root": root, "out": out, "amodal": amodal, "inmodal": inmodal, "images": images}


def load_data(out: Path) -> dict:
    text = (out / "data.js").read_text()
    assert text.startswith("window.ASN_VIEW = ") and text.rstrip().endswith(";")
    return json.loads(text[len("window.ASN_VIEW = "):].rstrip().rstrip(";"))


def test_site_files_and_data(site):
    out = site["out"]
    assert {p.name for p in out.iterdir()} >= {"index.html", "viewer.js", "data.js", "images"}
    html = (out / "index.html").read_text()
    assert '<script src="data.js">' in html and '<script src="viewer.js">' in html
    assert "http" not in re.sub(r"<!--.*?-->", "", html, flags=re.S)  # nothing fetched from a network
    data = load_data(out)
    assert len(data["images"]) == 3 and data["runs"][0]["name"] == "truth"
    for img in data["images"]:
        assert (out / img["src"]).is_file()
    first = data["images"][0]
    gt = first["gt"]
    assert gt and all(set(g) >= {"k", "c", "a", "i", "o", "oc", "r", "p"} for g in gt)
    dets = data["runs"][0]["detections"][str(first["id"])]
    assert len(dets) == len(gt) and all(d["o"] >= 1 and d["s"] == 0.9 for d in dets)
    per_image = data["runs"][0]["per_image"]
    assert sum(v["pairs"] for v in per_image.values()) > 0
    assert all(v["pairs_correct"] == v["pairs_matched"] == v["pairs"] for v in per_image.values())
    assert data["runs"][0]["metrics"] == {"amodal_ap": 100.0, "order_pair_accuracy": 100.0}
    assert [p.name for p in (site["root"] / "figures").iterdir()] == [Path(first["file"]).stem + ".png"]


def test_bad_input_is_one_line_exit_2(site, tmp_path):
    root = site["root"]
    proc = asn("view", "--gt", str(root / "gt"), "--images", str(site["images"]), "--run", str(tmp_path / "nothing"),
               "--out", str(tmp_path / "site"), check=False)
    assert proc.returncode == 2 and "no such evaluation folder" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "site").exists()
    proc = asn("view", "--gt", str(root / "gt"), "--images", str(tmp_path), "--out", str(tmp_path / "site"), check=False)
    assert proc.returncode == 2 and "image of the ground truth not found" in proc.stderr
    assert "--run" in asn("view", "--help").stdout


def _inmodal_union(site, image_file: str) -> int:
    """Pixels of the union of one image's ground-truth inmodal masks."""
    image = next(img for img in site["amodal"]["images"] if img["file_name"] == image_file)
    rles = [a["segmentation"] for a in site["inmodal"]["annotations"] if a["image_id"] == image["id"]]
    return int(np.any(mask_utils.decode(rles), axis=2).sum())


@needs_chromium
def test_browser_from_file_draws_picture_and_masks_and_a_toggle_changes_them(site):
    url = (site["out"] / "index.html").resolve().as_uri()
    data = load_data(site["out"])
    first = data["images"][0]
    # only the ground truth's inmodal fill: exactly the union of its masks is painted
    drawn = body_data(url + "#image=0&gt=1&pred=0&amodal=0&inmodal=1&order=0")
    assert drawn["photo"] == first["file"] and drawn["image"] == first["file"]
    assert int(drawn["gt-drawn"]) == len(first["gt"]) and drawn["pred-drawn"] == "0"
    assert int(drawn["painted-pixels"]) == _inmodal_union(site, first["file"])
    assert int(drawn["first-draw-ms"]) >= 0
    # the self test clicks the ground-truth checkbox: fewer instances, other pixels
    tested = body_data(url + "#image=0&pred=0&selftest=1")
    assert tested["selftest"] == "done"
    assert int(tested["gt-before"]) == len(first["gt"]) and tested["gt-after"] == "0"
    assert tested["checksum-before"] != tested["checksum-after"]
    # the class filter and the score threshold act on what is drawn
    car_only = body_data(url + "#image=0&gt=0&pred=1&classes=4")
    cars = sum(1 for d in data["runs"][0]["detections"][str(first["id"])] if d["c"] == 4)
    assert int(car_only["pred-drawn"]) == cars
    assert body_data(url + "#image=0&gt=0&pred=1&score=0.95")["pred-drawn"] == "0"


@needs_chromium
def test_browser_screenshot_shows_the_picture_with_masks(site, tmp_path):
    from PIL import Image

    url = (site["out"] / "index.html").resolve().as_uri()
    shots = {}
    for name, state in (("masks", "gt=1&pred=1"), ("none", "gt=0&pred=0")):
        path = tmp_path / f"{name}.png"
        browser("--window-size=900,500", f"--screenshot={path}", url + f"#image=0&zoom=1&{state}")
        with Image.open(path) as shot:
            shots[name] = np.asarray(shot.convert("RGB")).astype(int)
    # the photo (zoom 1, below the controls) is not blank, and the masks change the picture
    assert shots["none"].std() > 10
    assert np.abs(shots["masks"] - shots["none"]).sum(axis=2).astype(bool).sum() > 200


@needs_chromium
def test_browser_over_http_on_localhost(site):
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(site["out"]))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        drawn = body_data(f"http://127.0.0.1:{server.server_address[1]}/index.html#image=1&selftest=1")
    finally:
        server.shutdown()
        server.server_close()
    data = load_data(site["out"])
    assert drawn["photo"] == data["images"][1]["file"] and drawn["selftest"] == "done"
    assert int(drawn["painted-pixels"]) > 0
