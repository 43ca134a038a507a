"""`asn report`: the index of Tables 1-8 with provenance, from the files the stages wrote."""

from __future__ import annotations

import json
from pathlib import Path


from asn.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _stats(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"source": "synthetic (embedded KINS-format world, not KINS)"}))
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
    # the statistics with the paper's columns (not transcribed here: said, not guessed)
    assert "| car | 10 | 0.6250 | n/a | n/a |" in text
    assert "| ours (all splits) | inmodal | 0.7700 | 0.6600 |" in text
    assert "| annotator_2 (ours) | 0.8000 | 1.0000 | 0.8500 |" in text
    assert "not transcribed" in text
    assert "| Mask R-CNN (`mrcnn`) | 2 | 12.3 | 12.3 | 12.3 |" in text


def test_paper_values_appear_beside_ours_when_transcribed(tmp_path, monkeypatch):
    from asn import paper

    monkeypatch.setattr(paper, "TABLE1", {"car": {"total": 999, "ratio": 0.5}})
    monkeypatch.setattr(paper, "TABLE1_SOURCE", "Table 1 of the paper")
    _stats(tmp_path / "stats")
    out = tmp_path / "README.md"
    assert main(["report", "--stats", str(tmp_path / "stats"), "--tables", str(tmp_path / "tables"),
                 "--out", str(out)]) == 0
    text = out.read_text()
    assert "| car | 10 | 0.6250 | 999 | 0.5000 |" in text and "paper-reported on KINS (Table 1 of the paper)" in text


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


def test_table3_two_stage_layout_with_paper_columns(tmp_path, monkeypatch):
    from asn import paper

    _stats(tmp_path / "stats")
    stage = {"names": ["annotator_1", "annotator_2"], "matrix": [[1.0, 0.8], [0.8, 1.0]],
             "vs_majority": [0.9, 0.85], "reference": "data/normalized/train_amodal.json"}
    (tmp_path / "stats" / "table3.json").write_text(json.dumps({
        **stage, "layout": "two_stage", "n_images": 2, "n_instances": 7, "source": "synthetic annotators",
        "stages": [stage | {"stage": 1, "vs_reference": [0.9, 0.8], "majority_vs_reference": 0.91},
                   stage | {"stage": 2, "matrix": [[1.0, 0.9], [0.9, 1.0]], "vs_reference": [0.95, 0.93],
                            "majority_vs_reference": 0.96}]}))
    monkeypatch.setattr(paper, "TABLE3", {"majority_vote": {"stage 1": 0.5, "stage 2": 0.6}})
    monkeypatch.setattr(paper, "TABLE3_SOURCE", "Table 3 of the paper")
    out = tmp_path / "README.md"
    assert main(["report", "--stats", str(tmp_path / "stats"), "--tables", str(tmp_path / "tables"),
                 "--out", str(out)]) == 0
    text = out.read_text()
    assert "| Annotation | stage 1 | stage 2 |" in text
    assert "| annotator_2 (ours) | 0.8000 | 0.9300 |" in text
    assert "| majority_vote (ours) | 0.9100 | 0.9600 |" in text
    assert "| mean pairwise (between annotators) (ours) | 0.8000 | 0.9000 |" in text
    assert "| majority_vote (paper) | 0.5000 | 0.6000 |" in text
    assert "IoU with the released annotation `data/normalized/train_amodal.json`" in text
