"""`asn report`: the index of Tables 1-8 with provenance, from the files the stages wrote."""

from __future__ import annotations

import json
from pathlib import Path


from asn.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _stats(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({
        "source": "synthetic (embedded KINS-format world, not KINS)", "n_images": 3, "instances_per_image": 11.924,
        "mean_occlusion_ratio": 0.25, "cluster_max_order_above_6_fraction": 0.02,
        "cluster_max_order_counts": {"1": 6, "2": 2, "3": 1, "4": 1, "5": 0, ">5": 0},
        "match_number_counts": {"0": 9, "1": 1, "2": 1, "3": 0, "4": 0, "5": 0, ">5": 2}}))
    (folder / "table1.csv").write_text("category,supercategory,train_count,test_count,total,ratio,ratio_in_supercategory\n"
                                       "car,vehicle,8,2,10,0.625,1.0\npedestrian,people,5,1,6,0.375,1.0\n")
    (folder / "table2.csv").write_text("split,segments,convexity,simplicity,n_segments,n_measured,n_multi_part\n"
                                       "all,amodal,0.85,0.73,16,16,0\nall,inmodal,0.77,0.66,16,16,2\n")
    (folder / "table3.json").write_text(json.dumps({
        "names": ["annotator_1", "annotator_2"], "matrix": [[1.0, 0.8], [0.8, 1.0]], "vs_majority": [0.9, 0.85],
        "n_images": 2, "n_instances": 7, "source": "synthetic annotators"}))
    for name in ("table1.md", "table2.md", "table3.md", "figure4a.png"):
        (folder / name).write_text("x")


def _table(folder: Path, name: str, commit: str = "abcdef0123456789") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    row = {"variant": "mrcnn", "name": "Mask R-CNN", "seeds": 2, "seed_list": [0, 3],
           **{m: {"mean": 12.34, "variance": 0.5} for m in ("det_ap", "amodal_ap", "inmodal_ap")}}
    (folder / f"{name}.json").write_text(json.dumps({"table": name, "data_source": "synthetic", "profile": "smoke",
                                                     "git_commit": commit, "rows": [row]}))
    (folder / f"{name}.md").write_text("x")


def test_index_lists_every_table_with_its_provenance(tmp_path):
    _stats(tmp_path / "reports" / "stats")
    _table(tmp_path / "reports" / "tables", "table4")
    _table(tmp_path / "reports" / "tables", "table6", commit="fedcba9876543210")
    out = tmp_path / "reports" / "README.md"
    assert main(["report", "--stats", str(tmp_path / "reports" / "stats"),
                 "--tables", str(tmp_path / "reports" / "tables"), "--out", str(out)]) == 0
    text = out.read_text()
    assert "not KINS" in text
    # every table 1-8 has a row; links are relative to the index's folder
    for label in ("Table 1:", "Table 2:", "Table 3:", "Table 4:", "Table 5:", "Table 6:", "Table 7:", "Table 8:"):
        assert f"| {label}" in text, label
    assert "[table1.md](stats/table1.md)" in text and "[table4.md](tables/table4.md)" in text
    table4 = next(line for line in text.splitlines() if line.startswith("| Table 4: Det"))
    assert "| smoke | 0, 3 | `abcdef0123` | `dvc repro aggregate` | `table4` |" in table4
    table6 = next(line for line in text.splitlines() if line.startswith("| Table 6:"))
    assert "`fedcba9876`" in table6 and "asn-ablation/table6" in table6
    table5 = next(line for line in text.splitlines() if line.startswith("| Table 5:"))
    assert "not generated yet" in table5 and "prefect deployment run 'asn-ablation/table5'" in table5
    order = next(line for line in text.splitlines() if line.startswith("| Inference order"))
    assert "prefect deployment run 'asn-ablation/inference_order'" in order and "`inference_order`" in order
    # the statistics with the paper's columns (asn.paper), labelled paper-reported on KINS
    assert "| car | 10 | 62.50 | 129164 | 67.76 |" in text
    assert "| pedestrian | 6 | 37.50 | 20134 | 10.56 |" in text
    assert "| ours (all splits) | inmodal | 0.7700 | 0.6600 |" in text
    assert "| KINS (paper-reported) | amodal | 0.830 | 0.639 |" in text and "| BSDS-A (paper-reported) | inmodal | 0.718 | 0.616 |" in text
    assert "Column pairing flagged" in text
    assert "| annotator_2 (ours) | 0.8000 | 1.0000 | 0.8500 |" in text
    assert "One annotation stage only" in text
    assert "not transcribed" not in text and "paper-reported on KINS (Qi et al., CVPR 2019, Table 1)" in text
    # section 3.2 beside summary.json: ours first, the paper's second
    assert "| instances per image | 11.92 | 12.53 |" in text
    assert "| mean occlusion ratio (%) | 25.00 | 31.7 |" in text
    assert "| clusters with max occlusion order > 6 (%) | 2.00 | 1.54 |" in text
    assert "| objects per image, KITTI detection labels | n/a | 6.93 |" in text
    # Figure 4(c): fractions of each series beside the paper's (97840 / 162572 objects with value 1)
    assert "| 1 / 1 | 0.6000 | 0.5834 | 0.2500 | 0.6018 |" in text
    assert "| >5 / >6 | 0.0000 | 0.0264 | 0.5000 | 0.0184 |" in text
    assert "pairing by bar position" in text and "the paper prints no numbers" in text
    assert "| Mask R-CNN (`mrcnn`) | 2 | 12.3 | 12.3 | 12.3 |" in text


def test_paper_values_appear_beside_ours_when_transcribed(tmp_path, monkeypatch):
    from asn import paper

    # the index reads asn.paper, not a copy of it
    monkeypatch.setattr(paper, "TABLE1", {"car": {"general": "vehicle", "count": 999, "ratio_percent": 50.0}})
    _stats(tmp_path / "stats")
    out = tmp_path / "README.md"
    assert main(["report", "--stats", str(tmp_path / "stats"), "--tables", str(tmp_path / "tables"),
                 "--out", str(out)]) == 0
    text = out.read_text()
    assert "| car | 10 | 62.50 | 999 | 50.00 |" in text and "| pedestrian | 6 | 37.50 | n/a | n/a |" in text


def test_missing_statistics_is_one_clear_error_and_nothing_written(tmp_path, capsys):
    out = tmp_path / "README.md"
    out.write_text("previous index\n")
    code = main(["report", "--stats", str(tmp_path / "nope"), "--tables", str(tmp_path), "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert "summary.json" in err and "dvc repro stats" in err
    assert out.read_text() == "previous index\n"  # nothing already there is lost


def test_corrupt_table_json_names_the_file(tmp_path, capsys):
    _stats(tmp_path / "stats")
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "table4.json").write_text("{not json")
    code = main(["report", "--stats", str(tmp_path / "stats"), "--tables", str(tmp_path / "tables"),
                 "--out", str(tmp_path / "README.md")])
    assert code == 2 and "table4.json" in capsys.readouterr().err


def test_table3_two_stage_layout_with_paper_columns(tmp_path):
    _stats(tmp_path / "stats")
    stage = {"names": ["annotator_1", "annotator_2"], "matrix": [[1.0, 0.8], [0.8, 1.0]],
             "vs_majority": [0.9, 0.85], "reference": "data/normalized/train_amodal.json"}
    (tmp_path / "stats" / "table3.json").write_text(json.dumps({
        **stage, "layout": "two_stage", "n_images": 2, "n_instances": 7, "source": "synthetic annotators",
        "stages": [stage | {"stage": 1, "vs_reference": [0.9, 0.8], "majority_vs_reference": 0.91},
                   stage | {"stage": 2, "matrix": [[1.0, 0.9], [0.9, 1.0]], "vs_reference": [0.95, 0.93],
                            "majority_vs_reference": 0.96}]}))
    out = tmp_path / "README.md"
    # a table3.json of the previous layout (no stage-2 x stage-1 matrix): said, not guessed
    assert main(["report", "--stats", str(tmp_path / "stats"), "--tables", str(tmp_path / "tables"),
                 "--out", str(out)]) == 0
    assert "The stage-2 x stage-1 matrix is missing" in out.read_text()
    data = json.loads((tmp_path / "stats" / "table3.json").read_text())
    data["cross_stage"] = {
        "rows": ["annotator_1, stage 2", "annotator_2, stage 2", "majority_vote, stage 2"],
        "columns": ["annotator_1, stage 1", "annotator_2, stage 1", "majority_vote, stage 1"],
        "matrix": [[0.9, 0.7, 0.8], [0.75, 0.85, 0.8], [0.8, 0.8, 0.95]],
        "pattern": {"diagonal_mean": 0.875, "off_diagonal_mean": 0.725, "diagonal_higher": True,
                    "majority_cell": 0.95, "majority_highest": True}}
    (tmp_path / "stats" / "table3.json").write_text(json.dumps(data))
    assert main(["report", "--stats", str(tmp_path / "stats"), "--tables", str(tmp_path / "tables"),
                 "--out", str(out)]) == 0
    text = out.read_text()
    assert "| annotator_2, stage 2 (ours) | 0.7500 | 0.8500 | 0.8000 |" in text
    assert "| annmv2 (paper) | 0.838 | 0.836 | 0.837 | 0.843 |" in text
    assert "- Ours: diagonal mean 0.8750 > off-diagonal mean 0.7250: yes; majority-vote cell (0.9500) highest: yes" in text
    assert "- Paper: diagonal mean 0.8370 > off-diagonal mean 0.8090: yes; majority-vote cell (0.8430) highest: yes" in text
    # the previous table stays, below it
    assert "| Annotation | stage 1 | stage 2 |" in text
    assert "| annotator_2 (ours) | 0.8000 | 0.9300 |" in text
    assert "| majority_vote (ours) | 0.9100 | 0.9600 |" in text
    assert "| mean pairwise (between annotators) (ours) | 0.8000 | 0.9000 |" in text
    assert "IoU with the released annotation `data/normalized/train_amodal.json`" in text
    assert text.index("annmv2 (paper)") < text.index("| Annotation | stage 1 | stage 2 |")


def test_scene_order_figures_are_shown_when_make_view_wrote_them(tmp_path):
    _stats(tmp_path / "reports" / "stats")
    args = ["report", "--stats", str(tmp_path / "reports" / "stats"), "--tables", str(tmp_path / "reports" / "tables"),
            "--out", str(tmp_path / "reports" / "README.md")]
    assert main(args) == 0
    assert "## Scene order" not in (tmp_path / "reports" / "README.md").read_text()
    figures = tmp_path / "reports" / "figures"
    figures.mkdir()
    (figures / "000001.png").write_bytes(b"png")
    assert main(args) == 0
    text = (tmp_path / "reports" / "README.md").read_text()
    assert "## Scene order: ground truth beside predictions" in text and "![000001](figures/000001.png)" in text
