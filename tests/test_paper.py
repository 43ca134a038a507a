"""The paper's numbers (asn.paper) and how the tables put them beside ours: every number equals
the transcription, and each ablation arm gets its paper row by what it is, never by position."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from asn import paper, sweeps
from asn.config import load_params
from engine_helpers import PARAMS

TRANSCRIPTION = Path("/work/shared/paper/tables.json")


@pytest.mark.skipif(not TRANSCRIPTION.is_file(), reason="the shared transcription is not on this machine")
def test_every_number_equals_the_transcription():
    data = json.loads(TRANSCRIPTION.read_text())
    assert paper.SOURCE == data["source"]
    assert paper.NOTES.items() >= data["notes"].items()
    assert paper.DATASET == data["dataset"]
    assert [{"general": v["general"], "category": k, "count": v["count"], "ratio_percent": v["ratio_percent"]}
            for k, v in paper.TABLE1.items()] == data["table1"]["rows"]
    assert paper.TABLE1_PEOPLE_PERCENT == data["table1"]["people_percent"]
    assert [{"dataset": k, **v} for k, v in paper.TABLE2.items()] == data["table2"]["rows"]
    t3 = data["table3"]
    assert (list(paper.TABLE3["rows_stage2"]), list(paper.TABLE3["columns_stage1"])) == (t3["rows_stage2"], t3["columns_stage1"])
    assert [list(r) for r in paper.TABLE3["matrix"]] == t3["matrix"] and paper.TABLE3["images"] == t3["images"]
    assert {k: list(v) for k, v in paper.TABLE4.items()} == data["table4"]["rows"]
    assert list(paper.TABLE4) == list(data["table4"]["rows"])  # the paper's order
    assert paper.TABLE4_PARAMETERS == data["table4"]["parameters"] and paper.TABLE4_SETUP == data["table4"]["setup"]
    assert [{"model": r["model"], **({"mlc": list(r["mlc"])} if r["mlc"] else {}), "values": list(r["values"])}
            for r in paper.TABLE5] == data["table5"]["rows"]
    assert [{**r, "values": list(r["values"])} for r in paper.TABLE6] == data["table6"]["rows"]
    assert [{**r, "values": list(r["values"])} for r in paper.TABLE7] == data["table7"]["rows"]
    assert {k: list(v) for k, v in paper.TABLE8.items()} == data["table8"]["rows"]
    assert list(paper.TABLE8_METRICS) == data["table8"]["metrics"]
    fig = data["figure4c"]
    assert (list(paper.FIGURE4C["values"]), list(paper.FIGURE4C["max_match_number"]),
            list(paper.FIGURE4C["max_occlusion_order"])) == (fig["values"], fig["max_match_number"], fig["max_occlusion_order"])
    assert paper.FIGURE5 == data["figure5"]


def test_derived_numbers():
    assert paper.table1_total() == 190626
    # the printed ratios are count / 190,626
    for row in paper.TABLE1.values():
        assert 100 * row["count"] / 190626 == pytest.approx(row["ratio_percent"], abs=0.006)
    assert paper.table1_general("people") == {"count": 27504, "ratio_percent": 14.43}
    assert paper.occlusion_accuracy_percent(0.872) == pytest.approx(87.2)
    assert math.isclose(sum(paper.fractions(paper.FIGURE4C["max_occlusion_order"])), 1.0)
    assert paper.TABLE4["Mask R-CNN"] == (31.3, 29.3, 26.6) and paper.TABLE4["ORCNN"] == (30.9, 29.0, 26.4)


# ----------------------------------------------------------------------------------------------
# Tables 5-7: the paper's row of each arm
# ----------------------------------------------------------------------------------------------
def _table(name: str, arms=None):
    params = load_params(PARAMS)
    sweep = sweeps.sweep_from_params(params, name, seeds=[0])
    if arms is not None:
        sweep = sweeps.Sweep(table=sweep.table, title=sweep.title, arms=tuple(arms), seeds=sweep.seeds,
                             extra_metrics=sweep.extra_metrics)
    per_arm = {a.name: [{"det_ap": 1.0, "amodal_ap": 2.0, "inmodal_ap": 3.0, "occlusion_accuracy": 80.0, "_seed": 0}]
               for a in sweep.arms}
    table = sweeps.build(sweep, per_arm, params)
    text = sweeps.render_markdown(sweep, table, header={}, command="c", source="synthetic")
    return sweep, table, text, {row["variant"]: row for row in table["rows"]}


def test_table5_rows_by_mask_heads_oc_and_mlc_levels():
    sweep, table, text, rows = _table("table5")
    assert rows["mlc_0_3"]["paper_name"] == "Mask R-CNN + OC + MLC(0,3)"
    assert rows["mlc_0_3"]["paper"] == {"det_ap": 31.9, "amodal_ap": 29.8, "inmodal_ap": 27.9}
    assert "| Mask R-CNN + OC + MLC(0,3) | 31.9 | 29.8 | 27.9 |" in text
    assert rows["mlc_1_1"]["paper"] == {"det_ap": 32.7, "amodal_ap": 31.1, "inmodal_ap": 28.7}
    assert rows["inmodal_only"]["paper"] == {"det_ap": 31.0, "amodal_ap": None, "inmodal_ap": 26.4}
    assert "| Mask R-CNN, inmodal mask only | 31.0 | – | 26.4 |" in text
    assert rows["oc"]["paper_name"] == "Mask R-CNN + OC" and rows["both"]["paper_name"] == "Mask R-CNN, amodal + inmodal"
    assert table["paper_only"] == [] and "MLC(a, b)" in text
    # by what an arm is, not where it stands: reversed arms, same pairs; a pair the paper lacks has none
    arms = list(reversed(sweep.arms)) + [sweeps.Arm(name="mlc_2_0", variant="mrcnn_asn", overrides=(
        "model.mlc_box_level=2", "model.mlc_mask_level=0"))]
    _, table, text, again = _table("table5", arms)
    assert {k: again[k]["paper_name"] for k in rows} == {k: rows[k]["paper_name"] for k in rows}
    assert "paper" not in again["mlc_2_0"] and "MLC(2, 0) is not in the paper's Table 5" in again["mlc_2_0"]["paper_note"]
    # without an arm for a paper row, the row is shown as paper-only
    _, table, text, _ = _table("table5", [a for a in sweep.arms if a.name != "mlc_3_0"])
    assert [item["name"] for item in table["paper_only"]] == ["Mask R-CNN + OC + MLC(3,0)"]
    assert "| paper only: Mask R-CNN + OC + MLC(3,0) — no arm in this sweep |" in text


def test_table6_rows_by_threshold_and_occlusion_accuracy_in_percent():
    sweep, table, text, rows = _table("table6")
    assert rows["occ_0.05"]["paper_name"] == "MR + OC(5%)"
    assert rows["occ_0.05"]["paper"]["occlusion_accuracy"] == pytest.approx(87.2)  # printed 0.872
    assert rows["occ_0.20"]["paper"]["det_ap"] == 31.2
    assert "this arm adds MLC" in rows["occ_0.00"]["paper_note"]  # ours are mrcnn_asn, the paper's MR + OC
    # the paper's first row, MR (Mask R-CNN without OC), is the arm no_oc; no paper-only row is left
    assert rows["no_oc"]["paper_name"] == "MR" and rows["no_oc"]["paper"]["occlusion_accuracy"] == pytest.approx(86.6)
    assert table["paper_only"] == []
    assert "| `occ_0.05` | 1 | 80.0 ± n/a | 80.00 | MR + OC(5%) | 87.2 |" in text
    assert "| `no_oc` | 1 | 80.0 ± n/a | 80.00 | MR | 86.6 |" in text
    csv_text = sweeps.render_csv(sweep, table).splitlines()
    assert csv_text[0].endswith("occlusion_accuracy_mean,occlusion_accuracy_variance,occlusion_accuracy_n,"
                                "occlusion_accuracy_paper_kins")
    assert csv_text[1].endswith(",80.0000,,1,86.6") and csv_text[3].endswith(",80.0000,,1,87.2")
    # without the MR arm, the paper's MR row is shown as paper-only
    _, table, text, _ = _table("table6", [a for a in sweep.arms if a.name != "no_oc"])
    assert [item["name"] for item in table["paper_only"]] == ["MR"]
    assert "| paper only: MR | – | – | – | MR | 86.6 |" in text
    assert sweeps.render_csv(sweep, table).splitlines()[-1].endswith(",,,0,86.6")
    # an mrcnn arm is the MR row; an mrcnn_oc arm at 15 % is MR + OC(15%) without a caveat
    _, table, _, rows = _table("table6", [sweeps.Arm(name="mr", variant="mrcnn"), sweeps.Arm(
        name="oc15", variant="mrcnn_oc", overrides=("model.occlusion_threshold=0.15",))])
    assert rows["mr"]["paper_name"] == "MR" and rows["mr"]["paper"]["occlusion_accuracy"] == pytest.approx(86.6)
    assert rows["oc15"]["paper_name"] == "MR + OC(15%)" and "paper_note" not in rows["oc15"]


def test_table7_rows_by_the_changed_mlc_part():
    sweep, table, text, rows = _table("table7")
    assert rows["fusion_add"]["paper_name"] == "0111 ADD"
    assert rows["fusion_add"]["paper"] == {"det_ap": 32.1, "amodal_ap": 30.5, "inmodal_ap": 27.9}
    assert "| 0111 ADD | 32.1 | 30.5 | 27.9 |" in text
    # digit 2 is the extraction convs: their number and their order adjustment
    assert rows["ext_convs_1"]["paper_name"] == "1011 1 CONV" and rows["ext_convs_3"]["paper_name"] == "1011 3 CONV"
    assert rows["no_order_ext2"]["paper_name"] == "1011 Order Adjustment"
    assert rows["comb_convs_1"]["paper_name"] == "1110 1 CONV" and rows["full"]["paper_name"] == "1111 (default MLC)"
    # no forced matches: two changes at once, or a modification the paper does not list
    for arm in ("no_order_ext1", "no_order_ext3", "comb_convs_2"):
        assert "paper" not in rows[arm], arm
    assert "two modifications at once" in rows["no_order_ext1"]["paper_note"]
    assert "1110 2 CONV: the paper has no such row" in rows["comb_convs_2"]["paper_note"]
    assert "| no paper row (1110 2 CONV: the paper has no such row) | – | – | – |" in text
    only = {item["name"]: item["note"] for item in table["paper_only"]}
    assert set(only) == {"1101 ADD", "1110 Order Adjustment", "1110 3 CONV"}
    assert "combination fusion" in only["1101 ADD"] and "already uses 3 combination convs" in only["1110 3 CONV"]
    # the codes in the arms' labels agree with the matched paper rows
    for arm in sweep.arms:
        row = rows[arm.name]
        if "paper" in row:
            assert arm.label.split()[0] == row["paper_name"].split()[0], arm.name


def test_custom_and_inference_order_have_no_paper_columns():
    sweep, table, text, rows = _table("inference_order")
    assert table["paper_source"] is None and table["paper_only"] == []
    assert "Paper columns: none" in text and all("paper" not in row for row in rows.values())
