"""Table 8's files from hand-made rows: our arms, then the paper's OSF / ISF / ISF with KINS rows
(paper-reported on KITTI 2015) with the role each arm plays."""

from __future__ import annotations

import csv
import io

from asn.sceneflow import table8


def _row(arm: str, base: float) -> dict:
    rates, interval = {}, {}
    for k, metric in enumerate(("D1", "D2", "Fl", "SF")):
        rates[metric] = {region: {"rate": base + k + j / 10, "outliers": 10 * (k + 1), "pixels": 1000}
                         for j, region in enumerate(("bg", "fg", "all"))}
        interval[metric] = {region: [base + k - 1, base + k + 1] for region in ("bg", "fg", "all")}
    return {"arm": arm, "label": table8.ARM_LABELS[arm], "seeds": 2 if arm.startswith("mrcnn") else "-",
            "seed_list": [0, 1], "rates": rates, "interval": interval}


ROWS = [_row("baseline", 50.0), _row("mrcnn", 40.0), _row("mrcnn_asn", 30.0), _row("gt", 20.0)]


def test_markdown_shows_the_paper_rows_and_the_roles():
    text = table8.render_markdown(ROWS, header={"Data": "hand-made"}, command="dvc repro sceneflow")
    assert "| paper: OSF | paper-reported on KITTI 2015 | 4.74 | 6.99 | 8.55 | 9.94 |" in text
    assert "| paper: ISF | paper-reported on KITTI 2015 | 3.61 | 4.84 | 6.50 | 7.46 |" in text
    assert "| paper: ISF with KINS | paper-reported on KITTI 2015 | 3.56 | 4.75 | 6.39 | 7.35 |" in text
    # ours: the -all rates (base + metric index + 0.2)
    assert "| ours: `mrcnn_asn` (-all) | masks from a KINS-style amodal model, ASN (ISF with KINS) ~ paper 'ISF with KINS' | 30.20 | 31.20 | 32.20 | 33.20 |" in text
    assert "| ours: `gt` (-all) | oracle: ground-truth masks, no paper counterpart | 20.20 |" in text
    roles = next(line for line in text.splitlines() if line.startswith("Roles: "))
    assert "`baseline` = no instances" in roles and "~ paper 'OSF'" in roles and "`mrcnn` = instance masks" in roles
    assert "`gt` = oracle" in roles
    assert "not comparable" in text and "not transcribed" not in text
    assert "synthetic stereo world, not KITTI" in text
    assert "— kitti2015" in table8.render_markdown(ROWS, header={}, command="c", source="kitti2015")


def test_csv_has_our_cells_then_the_paper_rows():
    lines = list(csv.DictReader(io.StringIO(table8.render_csv(ROWS))))
    ours = [line for line in lines if line["source"] == "ours"]
    paper = [line for line in lines if line["source"] == "paper-reported on KITTI 2015"]
    assert len(ours) == 4 * 12 and len(paper) == 3 * 4
    osf = {line["metric"]: line["rate"] for line in paper if line["arm"] == "OSF"}
    assert osf == {"D1": "4.74", "D2": "6.99", "Fl": "8.55", "SF": "9.94"}
    assert {line["arm"]: line["paper_row"] for line in ours} == {
        "baseline": "OSF", "mrcnn": "ISF", "mrcnn_asn": "ISF with KINS", "gt": ""}
    first = ours[0]
    assert (first["arm"], first["metric"], first["region"], first["rate"], first["low"]) == (
        "baseline", "D1", "bg", "50.0000", "49.0000")
    assert [row["row"] for row in table8.paper_rows()] == ["OSF", "ISF", "ISF with KINS"]
