"""The paper's claims, tested (asn.claims) on hand-made per-seed values: a known effect replicates,
a reversed one does not, a noisy one is inconclusive, p is scipy's Welch; a table not run yet says
so with its command; Table 2 / Table 8 / Figure 5 claims from their own files; and the section in
reports/README.md (asn report)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from asn import claims

OURS = [30.1, 30.3, 29.9, 30.2, 30.0]
BASE = [28.0, 28.2, 27.9, 28.1, 28.3]
NOISY_A = [1.0, 5.0, 2.0, 6.0, 3.0]
NOISY_B = [2.0, 4.0, 3.0, 5.0, 1.0]


def test_known_reversed_and_noisy_effects():
    known = claims.compare(OURS, BASE, sign=1)
    assert known["verdict"] == claims.REPLICATES
    assert known["effect"] == pytest.approx(np.mean(OURS) - np.mean(BASE))
    assert known["p"] == pytest.approx(stats.ttest_ind(OURS, BASE, equal_var=False).pvalue, rel=1e-12)
    assert known["ours"]["std"] == pytest.approx(np.std(OURS, ddof=1)) and known["ours"]["n"] == 5
    # the same numbers against the paper's claimed direction: a significant reversal
    assert claims.compare(BASE, OURS, sign=1)["verdict"] == claims.DOES_NOT
    # lower is better (Table 8): a lower error replicates
    assert claims.compare(BASE, OURS, sign=-1)["verdict"] == claims.REPLICATES
    noisy = claims.compare(NOISY_A, NOISY_B, sign=1)
    assert noisy["verdict"] == claims.INCONCLUSIVE and noisy["p"] > 0.05
    assert noisy["p"] == pytest.approx(stats.ttest_ind(NOISY_A, NOISY_B, equal_var=False).pvalue, rel=1e-12)


def test_p_edge_cases():
    # one exact value (a deterministic arm): Welch with its variance 0 = one-sample t
    p, how = claims.welch_p(OURS, [28.0])
    assert p == pytest.approx(stats.ttest_1samp(OURS, 28.0).pvalue) and "one-sample" in how
    assert claims.welch_p([1.0], [2.0]) == (None, "fewer than 2 samples")
    assert claims.welch_p([1.0, 1.0], [2.0, 2.0])[0] is None
    assert claims.compare([1.0], [2.0], sign=1)["verdict"] == claims.INCONCLUSIVE
    assert claims.test_verdict(0.0, 0.001, 1) == claims.INCONCLUSIVE


def test_claim_verdicts():
    r, d, i = ({"verdict": v} for v in (claims.REPLICATES, claims.DOES_NOT, claims.INCONCLUSIVE))
    assert claims.claim_verdict([r, r]) == claims.REPLICATES
    assert claims.claim_verdict([r, i]) == claims.INCONCLUSIVE
    assert claims.claim_verdict([r, i, d]) == claims.DOES_NOT
    assert claims.claim_verdict([]) == claims.NOT_RUN


def _row(variant, values, paper=None):
    row = {"variant": variant, "name": variant, "seed_list": list(range(len(values))),
           "amodal_ap": {"values": list(values)}}
    if paper is not None:
        row["paper"] = {"amodal_ap": paper}
    return row


def _by_id(results):
    return {c["id"]: c for c in results}


def test_tables_to_claims_and_not_run_yet():
    table4 = {"rows": [_row("mrcnn", BASE, 29.3), _row("mrcnn_asn", OURS, 31.1),
                       _row("panet", NOISY_B, 30.4), _row("panet_asn", NOISY_A, 32.2)]}
    table5 = {"rows": [_row("both", BASE), _row("oc", OURS), _row("mlc_1_1", BASE)]}
    results = _by_id(claims.evaluate_claims({"table4": table4, "table5": table5}))
    asn = results["asn_beats_baselines"]
    assert [t["verdict"] for t in asn["tests"]] == [claims.REPLICATES, claims.INCONCLUSIVE]
    assert asn["verdict"] == claims.INCONCLUSIVE and asn["replicating"] == 1 and asn["tests_run"] == 2
    assert asn["tests"][0]["paper_effect"] == pytest.approx(1.8)
    # Table 6 not run: the OC claim rests on Table 5 alone and names the missing command
    oc = results["oc_helps"]
    assert oc["verdict"] == claims.REPLICATES and [t["table"] for t in oc["tests"]] == ["table5"]
    assert oc["missing"] == [{"input": "table6", "command": claims.COMMANDS["table6"]}]
    # MLC(1, 1) below + OC: a significant reversal; the MLC positions not in this table: not run
    mlc = results["mlc_position"]
    assert mlc["tests"][0]["verdict"] == claims.DOES_NOT and mlc["verdict"] == claims.DOES_NOT
    assert all(t["verdict"] == claims.NOT_RUN for t in mlc["tests"][1:]) and "no row mlc_0_0" in mlc["tests"][1]["why"]
    for key in ("mlc_parts", "sceneflow", "figure5", "amodal_shapes"):
        assert results[key]["verdict"] == claims.NOT_RUN and results[key]["missing"][0]["command"]
    # Table 7: the full MLC against every other arm of the table
    table7 = {"rows": [_row("full", OURS), _row("fusion_add", BASE), _row("comb_convs_1", BASE)]}
    parts = _by_id(claims.evaluate_claims({"table7": table7}))["mlc_parts"]
    assert [t["baseline_row"] for t in parts["tests"]] == ["fusion_add", "comb_convs_1"]
    assert parts["verdict"] == claims.REPLICATES


def test_table2_table8_and_figure5_claims():
    rows = [{"split": s, "segments": k, "convexity": str(c), "simplicity": str(c - 0.1), "source": "ours"}
            for s, k, c in (("train", "amodal", 0.85), ("train", "inmodal", 0.77), ("test", "amodal", 0.86),
                            ("test", "inmodal", 0.78), ("all", "amodal", 0.852), ("all", "inmodal", 0.772))]
    rows.append({"split": "KINS", "segments": "amodal", "convexity": "0.1", "simplicity": "0.1", "source": "paper"})
    shapes = claims.table2_claim(rows)
    assert shapes["verdict"] == claims.REPLICATES
    assert shapes["tests"][0]["effect"] == pytest.approx(0.08) and set(shapes["tests"][0]["split_effects"]) == {"train", "test"}
    assert shapes["tests"][0]["paper_effect"] == pytest.approx(0.830 - 0.709)
    rows[1]["convexity"] = "0.9"  # amodal below inmodal in one split: not the same sign everywhere
    assert claims.table2_claim(rows)["tests"][0]["verdict"] == claims.INCONCLUSIVE

    def counts(sf_outliers_per_seed):
        # [seed][scene][metric][region] = [outliers, pixels]; only SF-all matters here
        out = []
        for outliers in sf_outliers_per_seed:
            scene = [[[0, 100], [0, 100], [0, 100]] for _ in range(4)]
            scene[3][2] = [outliers, 1000]
            out.append([scene, scene])  # two scenes, pooled: rate = outliers / 1000
        return out

    table8 = {"rows": [{"arm": "baseline", "per_seed_scene_counts": counts([300])},
                       {"arm": "mrcnn", "per_seed_scene_counts": counts([250, 252, 249, 251, 250])},
                       {"arm": "mrcnn_asn", "per_seed_scene_counts": counts([240, 241, 239, 242, 240])}]}
    assert claims.sceneflow_samples(table8["rows"][1]) == pytest.approx([25.0, 25.2, 24.9, 25.1, 25.0])
    flow = claims.table8_claim(table8)
    assert [t["verdict"] for t in flow["tests"]] == [claims.REPLICATES] * 3 and flow["verdict"] == claims.REPLICATES
    assert flow["tests"][0]["p"] == pytest.approx(stats.ttest_1samp([25.0, 25.2, 24.9, 25.1, 25.0], 30.0).pvalue)
    assert flow["tests"][2]["paper_effect"] == pytest.approx(7.35 - 7.46)

    rng = np.random.default_rng(0)
    figure = {"runs": [{"variant": "mrcnn", "snapshots": [
        {"iteration": it, "ratios": list(rng.normal(mean, 0.05, 60))}
        for it, mean in ((200, 0.7), (1000, 0.95), (1200, 0.80))]}]}
    shrink = claims.figure5_claim(figure)
    assert shrink["tests"][0]["what"] == "mrcnn: iteration 1200 vs 1000" and shrink["verdict"] == claims.REPLICATES
    assert claims.figure5_claim({"runs": []})["verdict"] == claims.NOT_RUN

    text = "\n".join(claims.render_markdown([shapes, flow, shrink]))
    assert "## The paper's claims, tested" in text and "**replicates** = the effect has the paper's sign" in text
    assert "| table8: amodal + inmodal (mrcnn_asn) vs inmodal only (mrcnn) (`mrcnn_asn` vs `mrcnn`) | SF-all error (%) |" in text
    assert "Paper's direction: the first row lower than the second." in text


def test_report_renders_the_claims_and_the_sweep_commands(tmp_path):
    from asn.cli import main
    from test_report import _stats

    _stats(tmp_path / "stats")
    tables = tmp_path / "tables"
    tables.mkdir()
    table4 = {"table": "table4", "data_source": "synthetic", "profile": "smoke", "git_commit": "abc",
              "rows": [{**_row("mrcnn", BASE), "seeds": 5, **{m: {"mean": 28.1, "values": BASE} for m in ("det_ap", "inmodal_ap")},
                        "amodal_ap": {"mean": 28.1, "values": BASE}},
                       {**_row("mrcnn_asn", OURS), "seeds": 5, **{m: {"mean": 30.1, "values": OURS} for m in ("det_ap", "inmodal_ap")},
                        "amodal_ap": {"mean": 30.1, "values": OURS}}]}
    (tables / "table4.json").write_text(json.dumps(table4))
    table6 = dict(table4, table="table6", rows=[], timing={"wall_s": 4000.0, "jobs": 25, "trained": 15, "reused": 10,
                                                           "reused_with_metrics": 10, "cached": 0})
    (tables / "table6.json").write_text(json.dumps(table6))
    out = tmp_path / "README.md"
    assert main(["report", "--stats", str(tmp_path / "stats"), "--tables", str(tables), "--out", str(out)]) == 0
    text = out.read_text()
    assert "## The paper's claims, tested" in text
    assert "| 4 | ASN and PANet + ASN beat their baselines (Table 4) | **replicates** | 1 of 1 |" in text
    assert "| table4: Mask R-CNN + ASN vs Mask R-CNN (`mrcnn_asn` vs `mrcnn`) | Amodal AP | 30.10 ± 0.16 (n=5) |" in text
    assert "- table5: not run yet; `prefect deployment run 'asn-ablation/table5'" in text
    assert "| table6 | `prefect deployment run 'asn-ablation/table6'` | `python pipelines/ablation.py --table table6` | " \
           "66.7 min | 15 / 10 / 0 of 25 |" in text
    assert "| table5 | `prefect deployment run 'asn-ablation/table5'` | `python pipelines/ablation.py --table table5` | " \
           "not run yet | – |" in text
    assert "| Figure 5: predicted / true amodal area" in text and "python bench/figure5.py" in text
    # the convexity claim from table2.csv (only the `all` split there)
    assert "Amodal masks are more convex and simpler than inmodal ones (Table 2) | **replicates**" in text
