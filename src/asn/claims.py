"""The paper's claims, tested one by one on our data (a section of reports/README.md).

Each claim of Qi et al. (CVPR 2019) is a set of *tests*; a test compares two rows of one of our
tables on one metric, in the direction the paper claims (e.g. "+ OC" has a higher amodal AP than
"amodal + inmodal"; lower scene-flow error with instance masks). Pure functions: the inputs are
the JSON / CSV the stages and sweeps wrote (reports/tables/<table>.json, reports/stats/table2.csv,
reports/figures/figure5.json), nothing is recomputed from models.

Per test
    effect   = mean(ours) - mean(baseline) over the samples, in the metric's unit;
    spread   = the sample standard deviation (ddof=1) and the number of samples of each side;
    p        = Welch's t-test, two-sided (``scipy.stats.ttest_ind(equal_var=False)``). When one
               side is a single exact value (a deterministic arm: Table 8's baseline without
               instances, which has no seeds), Welch's statistic with that side's variance 0 is
               the one-sample t-test of the other side against it (``ttest_1samp``), which is
               used. No p when either side has fewer than 2 samples otherwise, or both have no
               spread at all.
    verdict  = "replicates": the effect has the paper's sign and p < 0.05;
               "does not replicate": the effect has the opposite sign and p < 0.05 (a
               significant reversal);
               "inconclusive": p >= 0.05 (either sign) or no p.
Per claim
    "replicates" when every one of its tests replicates; "does not replicate" when at least one
    test does not replicate (a significant reversal); "inconclusive" otherwise; "not run yet" when
    none of its tables exist (the command that produces each is given). No correction for
    multiple tests is applied: each test is at the 5 % level, and the number of tests is shown.

Samples are seeds (Tables 4-7: one model per seed; Table 8: the rate pooled over scenes per
seed), annotated segments' split means (Table 2: a property of the annotations, no seeds: the
test is descriptive, see :func:`table2_claim`) or occluded ground-truth instances (Figure 5).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

import numpy as np

ALPHA = 0.05
REPLICATES, DOES_NOT, INCONCLUSIVE, NOT_RUN = "replicates", "does not replicate", "inconclusive", "not run yet"

# How each input is produced (shown for an input that does not exist yet).
COMMANDS: Mapping[str, str] = {
    "table2": "dvc repro stats",
    "table4": "dvc repro aggregate",
    "table5": "prefect deployment run 'asn-ablation/table5' (or python pipelines/ablation.py --table table5)",
    "table6": "prefect deployment run 'asn-ablation/table6' (or python pipelines/ablation.py --table table6)",
    "table7": "prefect deployment run 'asn-ablation/table7' (or python pipelines/ablation.py --table table7)",
    "table8": "dvc repro sceneflow",
    "figure5": "python bench/figure5.py --variants mrcnn mrcnn_asn --iterations 1200 --steps 1000 1100 --every 200",
}
METRIC_NAMES: Mapping[str, str] = {"det_ap": "Det AP", "amodal_ap": "Amodal AP", "inmodal_ap": "Inmodal AP",
                                   "convexity": "convexity", "simplicity": "simplicity", "SF_all": "SF-all error (%)",
                                   "amodal_area_ratio": "predicted / true amodal area"}


# ----------------------------------------------------------------------------------------------
# one test
# ----------------------------------------------------------------------------------------------
def welch_p(ours: Sequence[float], baseline: Sequence[float]) -> tuple[Optional[float], str]:
    """``(p, how)``: Welch's two-sided p of two samples (see the module doc for a single exact value)."""
    from scipy import stats

    a, b = np.asarray(ours, dtype=float), np.asarray(baseline, dtype=float)
    if a.size >= 2 and b.size >= 2:
        if a.var(ddof=1) == 0 and b.var(ddof=1) == 0:
            return None, "no spread on either side"
        return float(stats.ttest_ind(a, b, equal_var=False).pvalue), "Welch"
    for many, one in ((a, b), (b, a)):
        if one.size == 1 and many.size >= 2:
            if many.var(ddof=1) == 0:
                return None, "no spread"
            return float(stats.ttest_1samp(many, popmean=float(one[0])).pvalue), "Welch, one side exact (one-sample t)"
    return None, "fewer than 2 samples"


def test_verdict(effect: float, p: Optional[float], sign: int) -> str:
    """The verdict of one test (module doc); ``sign``: +1 when the paper claims ours > baseline."""
    if p is None or not math.isfinite(p) or p >= ALPHA or effect == 0:
        return INCONCLUSIVE
    return REPLICATES if effect * sign > 0 else DOES_NOT


def compare(ours: Sequence[float], baseline: Sequence[float], *, sign: int) -> dict[str, Any]:
    """Effect, spread, Welch p and verdict of ``ours`` against ``baseline`` (paper: sign of ours - baseline)."""
    a, b = np.asarray(ours, dtype=float), np.asarray(baseline, dtype=float)
    p, how = welch_p(a, b)
    effect = float(a.mean() - b.mean())

    def side(x):
        return {"mean": float(x.mean()), "std": float(x.std(ddof=1)) if x.size > 1 else None, "n": int(x.size)}

    return {"ours": side(a), "baseline": side(b), "effect": effect, "p": p, "test": how,
            "verdict": test_verdict(effect, p, sign), "sign": sign}


def claim_verdict(tests: Sequence[Mapping[str, Any]]) -> str:
    verdicts = [t["verdict"] for t in tests]
    if not verdicts:
        return NOT_RUN
    if DOES_NOT in verdicts:
        return DOES_NOT
    if all(v == REPLICATES for v in verdicts):
        return REPLICATES
    return INCONCLUSIVE


# ----------------------------------------------------------------------------------------------
# tables -> tests
# ----------------------------------------------------------------------------------------------
def _rows(table: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(row.get("variant")): row for row in table.get("rows") or [] if isinstance(row, Mapping)}


def _values(row: Mapping[str, Any], metric: str) -> Optional[list[float]]:
    stats = row.get(metric)
    values = stats.get("values") if isinstance(stats, Mapping) else None
    if not isinstance(values, list):
        return None
    numbers = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return numbers or None


def _paper_effect(ours: Mapping[str, Any], baseline: Mapping[str, Any], metric: str) -> Optional[float]:
    a, b = (ours.get("paper") or {}).get(metric), (baseline.get("paper") or {}).get(metric)
    return None if a is None or b is None else round(float(a) - float(b), 6)


def seed_test(table_name: str, table: Mapping[str, Any], ours: str, baseline: str, metric: str, *,
              sign: int = 1, what: str = "") -> dict[str, Any]:
    """A test between two rows of a seeds table (Tables 4-7: ``rows[].<metric>.values`` per seed)."""
    rows = _rows(table)
    base = {"table": table_name, "ours_row": ours, "baseline_row": baseline, "metric": metric, "what": what,
            "unit": "seeds"}
    if ours not in rows or baseline not in rows:
        missing = [name for name in (ours, baseline) if name not in rows]
        return {**base, "verdict": NOT_RUN, "why": f"{table_name} has no row {', '.join(missing)}"}
    a, b = _values(rows[ours], metric), _values(rows[baseline], metric)
    if not a or not b:
        return {**base, "verdict": NOT_RUN, "why": f"no per-seed {metric} values"}
    result = compare(a, b, sign=sign)
    return {**base, **result, "ours_name": rows[ours].get("name", ours), "baseline_name": rows[baseline].get("name", baseline),
            "paper_effect": _paper_effect(rows[ours], rows[baseline], metric)}


def _missing(name: str) -> dict[str, str]:
    return {"input": name, "command": COMMANDS.get(name, "")}


def _claim(key: str, claim: str, source: str, tests: list[dict], missing: list[dict], notes: Sequence[str] = ()) -> dict:
    ran = [t for t in tests if t["verdict"] != NOT_RUN]
    return {"id": key, "claim": claim, "source": source, "verdict": claim_verdict(ran), "tests": tests,
            "replicating": sum(1 for t in ran if t["verdict"] == REPLICATES), "tests_run": len(ran),
            "missing": missing, "notes": list(notes)}


METRIC = "amodal_ap"  # the paper's headline metric of Tables 4-7 (amodal segmentation AP)


def _seed_claim(key: str, claim: str, source: str, tables: Mapping[str, Optional[Mapping[str, Any]]],
                specs: Sequence[tuple[str, str, str, str]], notes: Sequence[str] = ()) -> dict:
    """``specs``: (table, ours row, baseline row, description); sign +1 on :data:`METRIC`."""
    tests, missing = [], []
    for table_name, ours, baseline, what in specs:
        table = tables.get(table_name)
        if table is None:
            if _missing(table_name) not in missing:
                missing.append(_missing(table_name))
            continue
        tests.append(seed_test(table_name, table, ours, baseline, METRIC, sign=1, what=what))
    return _claim(key, claim, source, tests, missing, notes)


def table7_specs(table: Optional[Mapping[str, Any]]) -> list[tuple[str, str, str, str]]:
    """The full MLC (arm ``full``) against every other arm of Table 7."""
    if table is None:
        return [("table7", "full", "fusion_add", "")]  # enough to report "not run yet"
    rows = _rows(table)
    return [("table7", "full", name, f"default MLC vs {row.get('name', name)}")
            for name, row in rows.items() if name != "full"]


def table2_claim(rows: Optional[Sequence[Mapping[str, str]]]) -> dict:
    """Table 2: amodal segments are more convex and simpler than inmodal ones.

    A property of the annotations, not of a trained model: there are no seeds. The samples are
    the means of the splits (train, test); the effect is the difference of the means over all
    segments (split ``all``). Descriptive verdict: "replicates" when amodal > inmodal in every
    split, "does not replicate" when amodal < inmodal in every split, "inconclusive" otherwise
    (p: Welch over the split means, shown for completeness, not used: two splits are no sample).
    """
    key, claim = "amodal_shapes", "Amodal masks are more convex and simpler than inmodal ones"
    source = "Table 2"
    if not rows:
        return _claim(key, claim, source, [], [_missing("table2")])
    ours = [r for r in rows if r.get("source", "ours") == "ours"]
    tests = []
    for metric in ("convexity", "simplicity"):
        per_split: dict[str, dict[str, float]] = {}
        for row in ours:
            try:
                per_split.setdefault(str(row["split"]), {})[str(row["segments"])] = float(row[metric])
            except (KeyError, TypeError, ValueError):
                continue
        splits = {s: v for s, v in per_split.items() if {"amodal", "inmodal"} <= set(v)}
        parts = [s for s in splits if s != "all"] or list(splits)
        test = {"table": "table2", "ours_row": "amodal", "baseline_row": "inmodal", "metric": metric,
                "what": f"amodal vs inmodal {metric}, per split ({', '.join(parts)})", "unit": "split means",
                "ours_name": "amodal segments", "baseline_name": "inmodal segments", "sign": 1}
        if not parts:
            tests.append({**test, "verdict": NOT_RUN, "why": "table2.csv has no amodal / inmodal rows"})
            continue
        a = [splits[s]["amodal"] for s in parts]
        b = [splits[s]["inmodal"] for s in parts]
        overall = splits.get("all") or {"amodal": float(np.mean(a)), "inmodal": float(np.mean(b))}
        differences = [x - y for x, y in zip(a, b)]
        verdict = (REPLICATES if all(d > 0 for d in differences) else DOES_NOT if all(d < 0 for d in differences)
                   else INCONCLUSIVE)
        p, how = welch_p(a, b)
        from asn import paper

        kins = paper.TABLE2["KINS"][metric]
        tests.append({**test, "ours": {"mean": overall["amodal"], "std": None, "n": len(a)},
                      "baseline": {"mean": overall["inmodal"], "std": None, "n": len(b)},
                      "effect": overall["amodal"] - overall["inmodal"], "p": p,
                      "test": f"descriptive: sign in every split ({how} p not used)", "verdict": verdict,
                      "split_effects": dict(zip(parts, differences)),
                      "paper_effect": round(kins["amodal"] - kins["inmodal"], 6)})
    return _claim(key, claim, source, tests, [],
                  ["A property of the annotations (no seeds): the verdict is the sign of the effect in every split; "
                   "Welch p over two split means is shown, not used."])


SCENEFLOW_METRICS = ("D1", "D2", "Fl", "SF")
SCENEFLOW_REGIONS = ("bg", "fg", "all")


def sceneflow_samples(row: Mapping[str, Any], metric: str = "SF", region: str = "all") -> Optional[list[float]]:
    """Per-seed outlier rate (%) of a Table 8 arm, pooled over scenes, from ``per_seed_scene_counts``
    ([seed][scene][metric D1 D2 Fl SF][region bg fg all] = [outliers, pixels])."""
    counts = row.get("per_seed_scene_counts")
    if not isinstance(counts, list) or not counts:
        return None
    m, r = SCENEFLOW_METRICS.index(metric), SCENEFLOW_REGIONS.index(region)
    rates = []
    for seed in counts:
        array = np.asarray(seed, dtype=float)  # scenes x metrics x regions x 2
        if array.ndim != 4 or array.shape[1:] != (4, 3, 2):
            return None
        outliers, pixels = array[:, m, r, 0].sum(), array[:, m, r, 1].sum()
        rates.append(100.0 * outliers / pixels if pixels else float("nan"))
    return rates


def table8_claim(table: Optional[Mapping[str, Any]]) -> dict:
    """Table 8: instance masks of a KINS-style model improve scene flow (our mrcnn / mrcnn_asn arms
    vs the baseline without instances), and amodal + inmodal masks (mrcnn_asn, the paper's
    "ISF with KINS") beat inmodal masks only (mrcnn, the paper's "ISF"); SF-all error, lower is better."""
    key = "sceneflow"
    claim = ("Instance masks from a KINS-style model improve scene flow, and amodal + inmodal masks beat "
             "inmodal masks only")
    source = "Table 8"
    if table is None:
        return _claim(key, claim, source, [], [_missing("table8")])
    from asn import paper

    rows = {str(r.get("arm")): r for r in table.get("rows") or [] if isinstance(r, Mapping)}
    paper_sf = {name: values[paper.TABLE8_METRICS.index("SF")] for name, values in paper.TABLE8.items()}
    roles = {"baseline": "OSF", "mrcnn": "ISF", "mrcnn_asn": "ISF with KINS"}
    tests = []
    for ours, baseline, what in (("mrcnn", "baseline", "inmodal masks of mrcnn vs no instances"),
                                 ("mrcnn_asn", "baseline", "amodal + inmodal masks of mrcnn_asn vs no instances"),
                                 ("mrcnn_asn", "mrcnn", "amodal + inmodal (mrcnn_asn) vs inmodal only (mrcnn)")):
        test = {"table": "table8", "ours_row": ours, "baseline_row": baseline, "metric": "SF_all", "what": what,
                "unit": "seeds (rate pooled over scenes)", "sign": -1}
        a = sceneflow_samples(rows[ours]) if ours in rows else None
        b = sceneflow_samples(rows[baseline]) if baseline in rows else None
        if not a or not b:
            tests.append({**test, "verdict": NOT_RUN,
                          "why": "table8.json lacks these arms or their per_seed_scene_counts"})
            continue
        result = compare(a, b, sign=-1)
        tests.append({**test, **result, "ours_name": rows[ours].get("label", ours),
                      "baseline_name": rows[baseline].get("label", baseline),
                      "paper_effect": round(paper_sf[roles[ours]] - paper_sf[roles[baseline]], 6)})
    return _claim(key, claim, source, tests, [],
                  ["Paper's effect: SF error of the paper's row for our arm's role minus that of the baseline's "
                   "role (OSF for no instances, ISF for mrcnn, ISF with KINS for mrcnn_asn), KITTI 2015.",
                   "The baseline without instances is deterministic (one value): the test is Welch's with its "
                   "variance 0, i.e. the one-sample t-test of the model arm's seeds against it."])


def figure5_claim(figure: Optional[Mapping[str, Any]], variant: str = "mrcnn") -> dict:
    """Figure 5: longer training shrinks Mask R-CNN's predicted masks of occluded parts. Our measure
    (bench/figure5.py): predicted amodal area / ground-truth amodal area of matched occluded
    instances; the last snapshot against the one at 20/24 of its iterations (the paper's 20,000 vs
    24,000), samples = instances; the paper claims a lower ratio after longer training."""
    key, claim = "figure5", "Longer training shrinks the predicted masks of occluded parts (Mask R-CNN)"
    source = "Figure 5"
    if figure is None:
        return _claim(key, claim, source, [], [_missing("figure5")])
    runs = {str(r.get("variant")): r for r in figure.get("runs") or [] if isinstance(r, Mapping)}
    test = {"table": "figure5", "ours_row": "last snapshot", "baseline_row": "20/24 of it", "metric": "amodal_area_ratio",
            "unit": "occluded instances", "sign": -1}
    run = runs.get(variant)
    snapshots = [s for s in (run or {}).get("snapshots") or [] if s.get("ratios")]
    if len(snapshots) < 2:
        return _claim(key, claim, source, [{**test, "what": variant, "verdict": NOT_RUN,
                                            "why": f"figure5.json has fewer than 2 snapshots of {variant}"}], [])
    snapshots.sort(key=lambda s: int(s["iteration"]))
    last = snapshots[-1]
    target = int(last["iteration"]) * 20 / 24
    earlier = min(snapshots[:-1], key=lambda s: abs(int(s["iteration"]) - target))
    result = compare(last["ratios"], earlier["ratios"], sign=-1)
    tests = [{**test, **result, "what": f"{variant}: iteration {last['iteration']} vs {earlier['iteration']}",
              "ours_name": f"iteration {last['iteration']}", "baseline_name": f"iteration {earlier['iteration']}",
              "paper_effect": None}]
    return _claim(key, claim, source, tests, [],
                  ["The paper shows the effect in pictures only (no number).",
                   "Samples: the occluded ground-truth instances matched at each snapshot (the two sets overlap; "
                   "Welch treats them as independent, which is conservative for a paired effect)."])


def evaluate_claims(tables: Mapping[str, Optional[Mapping[str, Any]]], *,
                    table2_rows: Optional[Sequence[Mapping[str, str]]] = None,
                    figure5: Optional[Mapping[str, Any]] = None) -> list[dict]:
    """Every claim, in the paper's order of the brief. ``tables``: ``{"table4": json or None, ...}``."""
    t5 = [("table5", "oc", "both", "+ OC vs amodal + inmodal heads")]
    t6 = [("table6", "occ_0.05", "occ_0.00", "OC threshold 5 % vs 0 %"),
          ("table6", "occ_0.05", "occ_0.15", "OC threshold 5 % vs 15 %"),
          ("table6", "occ_0.05", "occ_0.20", "OC threshold 5 % vs 20 %")]
    mlc = [("table5", "mlc_1_1", "oc", "+ OC + MLC(1, 1) vs + OC")] + [
        ("table5", "mlc_1_1", f"mlc_{a}_{b}", f"MLC(1, 1) vs MLC({a}, {b})")
        for a, b in ((0, 0), (2, 2), (3, 3), (0, 3), (3, 0))]
    asn = [("table4", "mrcnn_asn", "mrcnn", "Mask R-CNN + ASN vs Mask R-CNN"),
           ("table4", "panet_asn", "panet", "PANet + ASN vs PANet")]
    return [
        _seed_claim("oc_helps", "Occlusion classification (OC) helps, best at the 5 % threshold", "Tables 5 and 6",
                    tables, t5 + t6),
        _seed_claim("mlc_position", "MLC helps and its position matters, best at MLC(1, 1)", "Table 5", tables, mlc),
        _seed_claim("mlc_parts", "Each MLC part's default operation is the better one", "Table 7", tables,
                    table7_specs(tables.get("table7"))),
        _seed_claim("asn_beats_baselines", "ASN and PANet + ASN beat their baselines", "Table 4", tables, asn),
        table2_claim(table2_rows),
        table8_claim(tables.get("table8")),
        figure5_claim(figure5),
    ]


# ----------------------------------------------------------------------------------------------
# markdown
# ----------------------------------------------------------------------------------------------
def _num(value: Optional[float], digits: int = 2) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _side(side: Optional[Mapping[str, Any]], digits: int) -> str:
    if not side:
        return "n/a"
    spread = f" ± {_num(side['std'], digits)}" if side.get("std") is not None else ""
    return f"{_num(side['mean'], digits)}{spread} (n={side['n']})"


def _p(p: Optional[float]) -> str:
    if p is None or not math.isfinite(p):
        return "n/a"
    return f"{p:.2g}" if p < 0.001 else f"{p:.3f}"


RULES = ("Verdict per test: **replicates** = the effect has the paper's sign and Welch p < 0.05; **does not "
         "replicate** = the opposite sign and p < 0.05; **inconclusive** = p >= 0.05 or no p. A claim replicates "
         "when all its tests do, does not when any test is a significant reversal, and is inconclusive otherwise; no "
         "correction for multiple tests. Effect = mean(first row) - mean(second row) in the metric's unit; cells are "
         "mean ± sample std (n samples); Tables 4-7 compare amodal AP over seeds (asn.claims).")


def render_markdown(claims: Sequence[Mapping[str, Any]], *, synthetic: bool = True) -> list[str]:
    """The section's lines."""
    lines = ["## The paper's claims, tested", "",
             ("On the synthetic world (not KINS): a verdict says whether the paper's claim holds **on our data**, "
              "not whether it holds on KINS." if synthetic else "On our data."), "", RULES, "",
             "| # | Claim (paper) | Verdict | Tests replicating | Missing inputs |", "|---|---|---|---|---|"]
    for index, claim in enumerate(claims, 1):
        missing = "; ".join(f"{m['input']}: `{m['command']}`" for m in claim["missing"]) or "–"
        lines.append(f"| {index} | {claim['claim']} ({claim['source']}) | **{claim['verdict']}** | "
                     f"{claim['replicating']} of {claim['tests_run']} | {missing} |")
    lines.append("")
    for index, claim in enumerate(claims, 1):
        lines += [f"### {index}. {claim['claim']} ({claim['source']}): {claim['verdict']}", ""]
        for item in claim["missing"]:
            lines.append(f"- {item['input']}: not run yet; `{item['command']}`")
        tests = claim["tests"]
        if tests:
            if claim["missing"]:
                lines.append("")
            lines += ["| Test | Metric | First | Second | Effect | Paper's effect | p | Verdict |",
                      "|---|---|---|---|---|---|---|---|"]
            for test in tests:
                digits = 3 if test["metric"] in ("convexity", "simplicity", "amodal_area_ratio") else 2
                name = test.get("what") or f"{test['ours_row']} vs {test['baseline_row']}"
                label = f"{test['table']}: {name} (`{test['ours_row']}` vs `{test['baseline_row']}`)"
                metric = METRIC_NAMES.get(test["metric"], test["metric"])
                if test["verdict"] == NOT_RUN:
                    lines.append(f"| {label} | {metric} | – | – | – | – | – | not run yet: {test.get('why', '')} |")
                    continue
                lines.append(f"| {label} | {metric} | {_side(test['ours'], digits)} | {_side(test['baseline'], digits)} "
                             f"| {test['effect']:+.{digits}f} | "
                             f"{'–' if test.get('paper_effect') is None else format(test['paper_effect'], f'+.{digits}f')} "
                             f"| {_p(test['p'])} | {test['verdict']} |")
            expected = {1: "higher", -1: "lower"}
            signs = sorted({t.get("sign", 1) for t in tests})
            lines += ["", "Paper's direction: the first row " + " / ".join(expected[s] for s in signs)
                      + " than the second."]
        lines += [f"- {note}" for note in claim.get("notes", [])]
        lines.append("")
    return lines
