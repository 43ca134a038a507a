"""Seed statistics and the Table 4 files: mean and sample variance, the comparison rule,
missing seeds refused by name, the table's provenance header and paper side columns."""

from __future__ import annotations

import json
import statistics

import pytest

from asn.errors import InputError
from asn.eval.seeds import PAPER_TABLE4, build_table, collect, compare, plot, render_csv, render_markdown, seed_stats


def test_seed_stats_sample_variance():
    values = [30.1, 30.5, 29.8, 30.9, 30.2]
    stats = seed_stats(values)
    assert stats["mean"] == pytest.approx(statistics.mean(values))
    assert stats["variance"] == pytest.approx(statistics.variance(values))  # sample, n - 1
    assert stats["n"] == 5 and stats["min"] == 29.8 and stats["max"] == 30.9
    assert seed_stats([1.0])["variance"] is None
    with pytest.raises(ValueError):
        seed_stats([])


def test_compare_separation_and_welch():
    apart = compare([5.0, 5.2, 5.1], [4.0, 4.1, 3.9])
    assert apart["separated"] and apart["difference"] == pytest.approx(1.1) and apart["welch_p"] < 0.01
    overlap = compare([5.0, 4.0, 4.5], [4.2, 4.8, 4.4])
    assert not overlap["separated"] and overlap["welch_p"] > 0.5
    assert compare([1.0], [2.0])["welch_p"] is None


def _write(root, variant, seed, amodal, **extra):
    folder = root / f"{variant}-{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(
        {"det_ap": amodal + 1, "amodal_ap": amodal, "inmodal_ap": amodal - 1, **extra}))


def _assert_tables_rectangular(markdown: str) -> None:
    """Every markdown table: each row has as many cells as its header and separator."""
    table: list[int] = []
    for line in markdown.splitlines() + [""]:
        if line.startswith("|"):
            table.append(line.count("|"))
        elif table:
            assert len(set(table)) == 1, f"ragged table (pipes per line {table})"
            table = []


def test_collect_names_the_missing_file(tmp_path):
    _write(tmp_path, "mrcnn", 0, 10.0)
    with pytest.raises(InputError, match=r"mrcnn-1[/\\]metrics.json.*mrcnn seed 1"):
        collect(tmp_path, ["mrcnn"], [0, 1])
    (tmp_path / "mrcnn-1").mkdir()
    (tmp_path / "mrcnn-1" / "metrics.json").write_text("{")
    with pytest.raises(InputError, match="not valid JSON"):
        collect(tmp_path, ["mrcnn"], [0, 1])


def test_table_files(tmp_path):
    for seed, (base, asn) in enumerate([(10.0, 12.0), (10.4, 12.5), (9.8, 11.9)]):
        _write(tmp_path, "mrcnn", seed, base)
        _write(tmp_path, "mrcnn_asn", seed, asn)
    table = build_table(collect(tmp_path, ["mrcnn", "mrcnn_asn"], [0, 1, 2]))
    markdown = render_markdown(table, title="Table 4", header={"Data": "synthetic", "Git commit": "abc"},
                               command="dvc repro aggregate")
    assert "10.1 ± 0.09" in markdown  # mean 10.07, sample variance 0.0933
    _assert_tables_rectangular(markdown)
    # the paper's row beside ours (Mask R-CNN: 31.3, not ORCNN's 30.9), labelled as the paper's
    assert "| Mask R-CNN | 31.3 | 29.3 | 26.6 |" in markdown
    assert "| Mask R-CNN + ASN | 32.7 | 31.1 | 28.7 |" in markdown
    assert "Paper row (paper-reported on KINS)" in markdown
    assert "Paper columns: paper-reported on KINS (Qi et al., CVPR 2019, Table 4, R50-FPN)" in markdown
    # the rows no variant of ours implements: paper-only, marked as such
    assert "| paper only: MNC — not implemented here | – | – | – | – | MNC | 20.9 | 18.5 | 16.1 |" in markdown
    assert "| paper only: FCIS — not implemented here | – | – | – | – | FCIS | 25.6 | 23.5 | 20.8 |" in markdown
    assert "`mrcnn_asn` vs `mrcnn`, Amodal Seg: 2.07 AP higher, beyond the seed spread" in markdown
    assert "**Git commit**: abc" in markdown and "sample (ddof=1" in markdown
    rows = render_csv(table).splitlines()
    assert rows[0].startswith("variant,name,seeds,det_ap_mean") and rows[0].endswith(",paper_row,paper_note")
    assert len(rows) == 1 + 2 + 2  # our two variants, then the paper-only MNC and FCIS
    assert rows[2].split(",")[:3] == ["mrcnn_asn", "Mask R-CNN + ASN", "3"]
    mrcnn = dict(zip(rows[0].split(","), rows[1].split(",")))
    assert (mrcnn["det_ap_paper_kins"], mrcnn["amodal_ap_paper_kins"], mrcnn["inmodal_ap_paper_kins"]) == (
        "31.3", "29.3", "26.6") and mrcnn["paper_row"] == "Mask R-CNN"
    mnc = dict(zip(rows[0].split(","), rows[3].split(",")))
    assert mnc["variant"] == "" and mnc["det_ap_mean"] == "" and mnc["det_ap_paper_kins"] == "20.9"
    assert mnc["paper_note"] == "not implemented here"
    plot(table, tmp_path / "t.png", title="t")
    first = (tmp_path / "t.png").read_bytes()
    plot(table, tmp_path / "t.png", title="t")
    assert first[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / "t.png").read_bytes() == first  # same table, same bytes


def test_paper_rows_cover_table4_variants():
    import yaml

    from engine_helpers import PARAMS

    variants = yaml.safe_load(PARAMS.read_text())["table4"]["variants"]
    assert set(variants) == set(PAPER_TABLE4)
    # every one of the paper's seven rows is shown: ours beside it, or paper-only
    from asn import paper
    from asn.eval.seeds import PAPER_TABLE4_ONLY

    assert sorted([name for name, _ in PAPER_TABLE4.values()] + [row[0] for row in PAPER_TABLE4_ONLY]) == sorted(paper.TABLE4)
    assert PAPER_TABLE4["mrcnn"] == ("Mask R-CNN", (31.3, 29.3, 26.6))


def test_table4_order_columns_beside_their_coverage(tmp_path):
    """The scene-order columns: mean ± variance of the seeds that have them, (k/n) when some lack
    them, n/a when none has; coverage beside each accuracy; in the CSV as extra columns."""
    from asn.eval.seeds import ORDER_METRICS

    for seed, accuracy in enumerate([80.0, 90.0, None]):
        extra = {} if accuracy is None else {"order_pair_accuracy": accuracy, "order_pair_coverage": 40.0 + seed,
                                             "order_cluster_accuracy": 50.0, "order_cluster_coverage": 10.0}
        _write(tmp_path, "mrcnn", seed, 10.0, **extra)
        _write(tmp_path, "orcnn", seed, 10.0)  # metrics from before the order scores
    table = build_table(collect(tmp_path, ["mrcnn", "orcnn"], [0, 1, 2]), order_metrics=ORDER_METRICS)
    markdown = render_markdown(table, title="Table 4", header={}, command="dvc repro aggregate")
    header = next(line for line in markdown.splitlines() if line.startswith("| Variant | Seeds"))
    assert header.endswith("| Order acc. (ours) | Pairs matched (ours) | Cluster order (ours) | Clusters matched (ours) |")
    mrcnn = next(line for line in markdown.splitlines() if "(`mrcnn`)" in line)
    assert mrcnn.endswith("| 85.0 ± 50.00 (2/3) | 40.5 ± 0.50 (2/3) | 50.0 ± 0.00 (2/3) | 10.0 ± 0.00 (2/3) |")
    orcnn = next(line for line in markdown.splitlines() if "(`orcnn`)" in line)
    assert orcnn.endswith("| n/a | n/a | n/a | n/a |")
    assert "Order columns (ours, percent, no paper counterpart" in markdown
    _assert_tables_rectangular(markdown)
    assert "| `mrcnn` | 2 | 11.00 | 10.00 | 9.00 | n/a | n/a | n/a | n/a |" in markdown
    rows = render_csv(table).splitlines()
    assert rows[0].endswith(",order_cluster_coverage_mean,order_cluster_coverage_variance,order_cluster_coverage_n")
    line = dict(zip(rows[0].split(","), rows[1].split(",")))
    assert (line["order_pair_accuracy_mean"], line["order_pair_accuracy_n"]) == ("85.0000", "2")
    # without order_metrics (the ablation tables) nothing changes
    plain = build_table(collect(tmp_path, ["mrcnn"], [0, 1, 2]))
    assert "order_metrics" not in plain and "Order acc." not in render_markdown(plain, title="t", header={}, command="c")
