"""`asn sceneflow` end to end on a tiny synthetic stereo world with tiny trained checkpoints:
the Table 8 files, the ground-truth arm beating the baseline on the foreground, and bad input."""

from __future__ import annotations

import json

import pytest

from engine_helpers import PARAMS, asn, make_world, sets

SMALL = ["--set", "sceneflow.scenes=2", "--set", "sceneflow.width=256", "--set", "sceneflow.height=80",
         "--set", "sceneflow.bootstrap=50", "--set", "sceneflow.max_disparity=32", "--set", "table4.seeds=[0]"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    base = tmp_path_factory.mktemp("sceneflow")
    world = make_world(base)
    for variant in ("mrcnn", "mrcnn_asn"):
        asn("train", "--params", str(PARAMS), "--gt", str(world["gt"]), "--images", str(world["train_images"]),
            "--out", str(base / "models" / f"{variant}-0"), "--variant", variant, "--no-progress",
            *sets("profiles.smoke.train.iterations=2", "profiles.smoke.train.steps=[1]"))
    return base / "models"


def test_table8_from_checkpoints_and_the_synthetic_stereo_world(models, tmp_path):
    out = tmp_path / "tables"
    proc = asn("sceneflow", "--params", str(PARAMS), "--data", str(tmp_path / "scenes"), "--models", str(models),
               "--out", str(out), "--no-progress", *SMALL)
    assert "sceneflow: 2 scenes" in proc.stderr
    for name in ("image_2/000001_11.png", "image_3/000000_10.png", "disp_occ_0/000000_10.png",
                 "disp_occ_1/000001_10.png", "flow_occ/000000_10.png", "obj_map/000000_10.png",
                 "instances.json", "calib.json"):
        assert (tmp_path / "scenes" / name).is_file(), name
    table = (out / "table8.md").read_text()
    assert "synthetic stereo / motion world (NOT KITTI" in table and "paper-reported on KITTI 2015" in table
    assert "| paper: OSF | paper-reported on KITTI 2015 | 4.74 | 6.99 | 8.55 | 9.94 |" in table
    for arm in ("baseline", "mrcnn", "mrcnn_asn", "gt"):
        assert f"(`{arm}`)" in table
    data = json.loads((out / "table8.json").read_text())
    rows = {row["arm"]: row for row in data["rows"]}
    assert rows["mrcnn_asn"]["seed_list"] == [0] and data["scenes"] == ["000000", "000001"]
    for row in rows.values():
        low, high = row["interval"]["Fl"]["all"]
        assert low is None or low <= row["rates"]["Fl"]["all"]["rate"] + 1e-9 <= high + 2e-9
    # rigid motion in the true masks cannot be worse than no instances on the foreground here
    assert rows["gt"]["rates"]["Fl"]["fg"]["rate"] <= rows["baseline"]["rates"]["Fl"]["fg"]["rate"]
    # the background ego-motion: outside the true masks everything is rigid, the baseline keeps
    # the pixels that contradict its motion
    assert rows["gt"]["rates"]["Fl"]["all"]["rate"] <= rows["baseline"]["rates"]["Fl"]["all"]["rate"]
    assert "**Background**: one rigid ego-motion" in table
    assert (out / "table8.png").read_bytes()[:4] == b"\x89PNG"
    csv_lines = (out / "table8.csv").read_text().splitlines()
    assert csv_lines[0] == "arm,seeds,metric,region,rate,low,high,outliers,pixels,source,paper_row"
    assert len(csv_lines) == 1 + 4 * 12 + 3 * 4  # our 4 arms x 12 cells, the paper's 3 rows x 4 metrics
    assert [p["row"] for p in data["paper"]] == ["OSF", "ISF", "ISF with KINS"]
    assert data["paper_roles"]["mrcnn_asn"]["paper_row"] == "ISF with KINS"


def test_without_egomotion_the_background_is_left_to_dis(models, tmp_path):
    out = tmp_path / "tables"
    asn("sceneflow", "--params", str(PARAMS), "--data", str(tmp_path / "scenes"), "--models", str(models),
        "--out", str(out), "--no-progress", *SMALL, "--set", "sceneflow.scenes=1",
        "--set", "sceneflow.egomotion.enabled=false")
    rows = {row["arm"]: row for row in json.loads((out / "table8.json").read_text())["rows"]}
    # instance refinement with ground-truth masks never touches the background
    assert rows["gt"]["rates"]["Fl"]["bg"] == rows["baseline"]["rates"]["Fl"]["bg"]
    assert "**Background**: left to DIS flow" in (out / "table8.md").read_text()


def test_missing_checkpoint_and_bad_source_exit_2(models, tmp_path):
    proc = asn("sceneflow", "--params", str(PARAMS), "--data", str(tmp_path / "s"), "--models", str(models),
               "--out", str(tmp_path / "o"), *SMALL, "--set", "table4.seeds=[0,7]", check=False)
    assert proc.returncode == 2 and "mrcnn-7" in proc.stderr and "checkpoint.pt" in proc.stderr
    proc = asn("sceneflow", "--params", str(PARAMS), "--data", str(tmp_path / "s"), "--models", str(models),
               "--out", str(tmp_path / "o"), *SMALL, "--set", "sceneflow.source=lidar", check=False)
    assert proc.returncode == 2 and "sceneflow.source" in proc.stderr and "lidar" in proc.stderr
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS.read_text().replace("    open_px: 9", "    open_px: 9\n    radius: 3"))
    proc = asn("sceneflow", "--params", str(params), "--data", str(tmp_path / "s"), "--models", str(models),
               "--out", str(tmp_path / "o"), *SMALL, check=False)
    assert proc.returncode == 2 and "sceneflow.egomotion" in proc.stderr and "radius" in proc.stderr
    proc = asn("sceneflow", "--params", str(PARAMS), "--data", str(tmp_path / "nothing"), "--models", str(models),
               "--out", str(tmp_path / "o"), *SMALL, "--set", "sceneflow.source=kitti2015", check=False)
    assert proc.returncode == 2 and "image_2" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_kitti_calibration_file_gives_focal_and_baseline(tmp_path):
    from asn.commands.sceneflow import read_kitti_calib
    from asn.errors import InputError

    path = tmp_path / "000000.txt"
    path.write_text("S_rect_02: 1242 375\n"
                    "P_rect_02: 7.215377e+02 0 6.095593e+02 4.485728e+01 0 7.215377e+02 1.728540e+02 2.163791e-01 0 0 1 2.745884e-03\n"
                    "P_rect_03: 7.215377e+02 0 6.095593e+02 -3.395242e+02 0 7.215377e+02 1.728540e+02 2.199936e+00 0 0 1 2.729905e-03\n")
    calib = read_kitti_calib(path)
    assert calib["focal"] == pytest.approx(721.5377) and calib["cx"] == pytest.approx(609.5593)
    assert calib["baseline"] == pytest.approx((44.85728 + 339.5242) / 721.5377)  # about 0.53 m
    path.write_text("P_rect_02: 1 2 3\n")
    with pytest.raises(InputError, match="P_rect_02"):
        read_kitti_calib(path)
