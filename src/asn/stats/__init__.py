"""Dataset statistics of the paper's section 3 (Tables 1-3, Figure 4), as the `stats` stage.

Modules: rle (windowed vectorised RLE decoding), shapes (Table 2 convexity / simplicity with
shapely 2), boxes (Figure 4(b) box consistency with KITTI label_2), clusters (Figure 4(c)
orders and match numbers, amodal coverage), consistency (Table 3), tables (Tables 1-2,
Markdown / CSV), plots, visualize, compute (per-split work in a process pool) and report
(:func:`asn.stats.report.run_stats`, what `asn stats` runs).
"""
