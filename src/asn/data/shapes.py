"""Class-specific silhouettes of the synthetic KINS world, built in metres.

Every silhouette is ONE outline polygon of about 30 vertices (KINS averages about 30 polygon
points per instance), made with shapely unions of simple parts (body, cabin, wheels, head, ...)
and reduced with Douglas-Peucker plus edge splitting. Interior *details* (windows, wheels,
skin, lights) are kept as separate polygons for the renderer only; they never change a mask.

Frame: x to the right, y DOWN (image convention), the object's ground contact at y = 0, so the
outline spans y in [-height, 0] and x in about [-width/2, width/2]. The scene module scales a
template by pixels-per-metre and translates it to its foot point.

A fixed library of templates per class is built once per process from a fixed seed
(:func:`template_library`), so generating a scene is only numpy arithmetic on templates.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import Point, Polygon, box
from shapely.ops import unary_union

__all__ = ["Template", "template_library", "reduce_outline", "TEMPLATES_PER_CLASS"]

TEMPLATES_PER_CLASS = 48
_LIBRARY_SEED = 20190616  # fixed: the template library is part of the world, not of a run's seed


@dataclass(frozen=True)
class Template:
    """One silhouette in metres: ``outline`` ``(K, 2)`` float64 (closed implicitly), details
    ``[(role, (M, 2) array)]`` drawn inside it, and its extent ``width`` x ``height``."""

    category_id: int
    outline: np.ndarray
    details: tuple[tuple[str, np.ndarray], ...]
    width: float
    height: float


def _disc(x: float, y: float, r: float, n: int = 16) -> Polygon:
    return Point(x, y).buffer(r, quad_segs=max(2, n // 4))


def _quad(x0: float, y0: float, x1: float, y1: float, x2: float, y2: float, x3: float, y3: float) -> Polygon:
    return Polygon([(x0, y0), (x1, y1), (x2, y2), (x3, y3)])


def reduce_outline(geom, n_vertices: int) -> np.ndarray:
    """A polygon's exterior as exactly ``n_vertices`` points ``(n, 2)``.

    Douglas-Peucker with a bisected tolerance keeps the corners (wheels, heads); then the
    longest edges are split until the count is reached. A MultiPolygon is first merged by a
    small buffer so the silhouette stays one outline.
    """
    if geom.geom_type != "Polygon":
        geom = geom.buffer(0.06).buffer(-0.03)
        if geom.geom_type != "Polygon":
            geom = max(geom.geoms, key=lambda g: g.area)
    geom = Polygon(geom.exterior)
    lo, hi = 0.0, max(geom.bounds[2] - geom.bounds[0], geom.bounds[3] - geom.bounds[1])
    best = np.asarray(geom.exterior.coords)[:-1]
    if len(best) > n_vertices:
        for _ in range(30):
            mid = 0.5 * (lo + hi)
            simp = geom.simplify(mid, preserve_topology=True)
            pts = np.asarray(simp.exterior.coords)[:-1]
            if len(pts) > n_vertices:
                lo = mid
            else:
                hi = mid
                best = pts
        best = np.asarray(geom.simplify(hi, preserve_topology=True).exterior.coords)[:-1]
    pts = [tuple(p) for p in best]
    while len(pts) < n_vertices:
        edges = [np.hypot(*np.subtract(pts[(i + 1) % len(pts)], pts[i])) for i in range(len(pts))]
        i = int(np.argmax(edges))
        a, b = np.asarray(pts[i]), np.asarray(pts[(i + 1) % len(pts)])
        pts.insert(i + 1, tuple(0.5 * (a + b)))
    out = np.asarray(pts, dtype=np.float64)
    # Counter-clockwise in the y-down frame is irrelevant to COCO; keep shapely's orientation.
    return out


def _wheels(xs: list[float], r: float) -> list[Polygon]:
    return [_disc(x, -r, r) for x in xs]


def _car(rng: np.random.Generator) -> tuple[list, list, float, float]:
    h = rng.uniform(1.35, 1.6)
    side = rng.random() < 0.6
    if side:
        w = rng.uniform(3.6, 4.6)
        r = rng.uniform(0.3, 0.36)
        sill = r * 0.9
        belt = h * rng.uniform(0.52, 0.6)
        body = _quad(-w / 2, -sill, w / 2, -sill, w / 2 - 0.05, -belt, -w / 2 + 0.15, -belt)
        body = body.union(box(-w / 2, -belt - 0.08, w / 2 - 0.1, -sill)).buffer(0.08).buffer(-0.08)
        c0 = -w / 2 + w * rng.uniform(0.22, 0.3)
        c1 = w / 2 - w * rng.uniform(0.18, 0.3)
        cabin = _quad(c0 - 0.45, -belt, c1 + 0.35, -belt, c1, -h, c0, -h)
        wx = w / 2 - rng.uniform(0.65, 0.85)
        wheels = _wheels([-wx, wx], r)
        window = cabin.buffer(-0.09)
        details = [("wheel", g) for g in wheels] + [("window", window)]
        details += [("light", box(w / 2 - 0.12, -belt + 0.02, w / 2, -belt + 0.16))]
        parts = [body, cabin, *wheels]
    else:
        w = rng.uniform(1.65, 1.9)
        belt = h * rng.uniform(0.5, 0.58)
        body = box(-w / 2, -belt, w / 2, -0.12).buffer(0.06).buffer(-0.06)
        cabin = _quad(-w / 2 + 0.08, -belt, w / 2 - 0.08, -belt, w / 2 - 0.22, -h, -w / 2 + 0.22, -h)
        tyres = [box(-w / 2 + 0.1, -0.3, -w / 2 + 0.35, 0.0), box(w / 2 - 0.35, -0.3, w / 2 - 0.1, 0.0)]
        window = cabin.buffer(-0.08)
        lights = [box(-w / 2 + 0.05, -belt + 0.08, -w / 2 + 0.4, -belt + 0.22),
                  box(w / 2 - 0.4, -belt + 0.08, w / 2 - 0.05, -belt + 0.22)]
        details = [("window", window)] + [("wheel", t) for t in tyres] + [("light", g) for g in lights]
        parts = [body, cabin, *tyres]
    return parts, details, w, h


def _van(rng: np.random.Generator) -> tuple[list, list, float, float]:
    h = rng.uniform(1.95, 2.5)
    side = rng.random() < 0.6
    if side:
        w = rng.uniform(4.6, 5.6)
        r = rng.uniform(0.32, 0.38)
        nose = rng.uniform(0.5, 0.9)
        body = Polygon([(-w / 2, -r * 0.9), (w / 2, -r * 0.9), (w / 2, -h * 0.5),
                        (w / 2 - nose, -h), (-w / 2, -h)]).buffer(0.1).buffer(-0.1)
        wx = w / 2 - 0.8
        wheels = _wheels([-wx, wx], r)
        windows = [box(w / 2 - nose - 0.7, -h + 0.15, w / 2 - nose - 0.1, -h * 0.6),
                   Polygon([(w / 2 - nose + 0.05, -h + 0.15), (w / 2 - 0.15, -h * 0.55),
                            (w / 2 - 0.4, -h * 0.55), (w / 2 - nose, -h * 0.6)])]
        details = [("wheel", g) for g in wheels] + [("window", g) for g in windows]
        parts = [body, *wheels]
    else:
        w = rng.uniform(1.9, 2.1)
        body = box(-w / 2, -h, w / 2, -0.15).buffer(0.1).buffer(-0.1)
        tyres = [box(-w / 2 + 0.1, -0.3, -w / 2 + 0.4, 0.0), box(w / 2 - 0.4, -0.3, w / 2 - 0.1, 0.0)]
        details = [("window", box(-w / 2 + 0.15, -h + 0.15, w / 2 - 0.15, -h * 0.6))]
        details += [("wheel", t) for t in tyres]
        parts = [body, *tyres]
    return parts, details, w, h


def _truck(rng: np.random.Generator) -> tuple[list, list, float, float]:
    h = rng.uniform(3.0, 3.8)
    side = rng.random() < 0.7
    if side:
        w = rng.uniform(7.0, 10.0)
        cab = rng.uniform(1.8, 2.3)
        r = rng.uniform(0.45, 0.52)
        cargo = box(-w / 2, -h, w / 2 - cab - 0.15, -r * 1.2)
        cab_h = h * rng.uniform(0.72, 0.85)
        cabin = Polygon([(w / 2 - cab, -r * 1.1), (w / 2, -r * 1.1), (w / 2, -cab_h * 0.55),
                         (w / 2 - 0.4, -cab_h), (w / 2 - cab, -cab_h)])
        chassis = box(-w / 2 + 0.3, -r * 1.4, w / 2 - 0.2, -r * 0.7)
        wheels = _wheels([-w / 2 + 1.2, -w / 2 + 2.3, w / 2 - cab / 2], r)
        window = Polygon([(w / 2 - cab + 0.25, -cab_h + 0.2), (w / 2 - 0.45, -cab_h + 0.2),
                          (w / 2 - 0.1, -cab_h * 0.6), (w / 2 - cab + 0.25, -cab_h * 0.6)])
        details = [("wheel", g) for g in wheels] + [("window", window),
                                                  ("stripe", box(-w / 2 + 0.2, -h * 0.55, w / 2 - cab - 0.35, -h * 0.45))]
        parts = [cargo, cabin, chassis, *wheels]
    else:
        w = rng.uniform(2.4, 2.6)
        body = box(-w / 2, -h, w / 2, -0.3)
        tyres = [box(-w / 2 + 0.1, -0.45, -w / 2 + 0.55, 0.0), box(w / 2 - 0.55, -0.45, w / 2 - 0.1, 0.0)]
        details = [("window", box(-w / 2 + 0.2, -h * 0.75, w / 2 - 0.2, -h * 0.5))]
        details += [("wheel", t) for t in tyres]
        parts = [body, *tyres]
    return parts, details, w, h


def _tram(rng: np.random.Generator) -> tuple[list, list, float, float]:
    body_h = rng.uniform(3.2, 3.6)
    w = rng.uniform(9.0, 15.0)
    roof = box(-w / 2 + 0.5, -body_h - 0.25, w / 2 - 0.5, -body_h + 0.05)
    body = box(-w / 2, -body_h, w / 2, -0.35).buffer(0.25).buffer(-0.25)
    bogies = [box(x - 0.9, -0.45, x + 0.9, 0.0) for x in (-w / 2 + 1.6, w / 2 - 1.6)]
    # Pantograph: a thin diamond on the roof, part of the outline as in KITTI annotations.
    px = rng.uniform(-w / 6, w / 6)
    panto = Polygon([(px - 0.9, -body_h - 0.2), (px, -body_h - 1.1), (px + 0.9, -body_h - 0.2),
                     (px, -body_h - 0.6)]).buffer(0.06)
    n_win = max(3, int(w / 1.6))
    pitch = (w - 1.0) / n_win
    windows = [box(-w / 2 + 0.5 + k * pitch + 0.12, -body_h + 0.35, -w / 2 + 0.5 + (k + 1) * pitch - 0.12,
                   -body_h * 0.55) for k in range(n_win)]
    details = [("window", g) for g in windows] + [("wheel", g) for g in bogies]
    details += [("stripe", box(-w / 2 + 0.1, -body_h * 0.35, w / 2 - 0.1, -body_h * 0.3))]
    h = body_h + 1.1
    return [body, roof, panto, *bogies], details, w, h


def _pedestrian(rng: np.random.Generator) -> tuple[list, list, float, float]:
    h = rng.uniform(1.55, 1.9)
    sh = rng.uniform(0.38, 0.5)  # shoulder width
    head_r = h * 0.065
    head = _disc(rng.uniform(-0.03, 0.03), -h + head_r, head_r)
    neck = -h + 2 * head_r
    hip = -h * rng.uniform(0.47, 0.53)
    torso = _quad(-sh / 2, neck + 0.05, sh / 2, neck + 0.05, sh / 2 * 0.8, hip, -sh / 2 * 0.8, hip)
    stride = rng.uniform(0.0, 0.35)
    leg_w = 0.13
    legs = [Polygon([(-0.12, hip), (-0.12 + leg_w, hip), (-stride / 2 + leg_w / 2, 0.0), (-stride / 2 - leg_w / 2, 0.0)]),
            Polygon([(0.12 - leg_w, hip), (0.12, hip), (stride / 2 + leg_w / 2, 0.0), (stride / 2 - leg_w / 2, 0.0)])]
    swing = rng.uniform(-0.15, 0.15)
    arms = [Polygon([(-sh / 2, neck + 0.07), (-sh / 2 + 0.1, neck + 0.07), (-sh / 2 - swing + 0.08, hip + 0.1),
                     (-sh / 2 - swing - 0.02, hip + 0.1)]),
            Polygon([(sh / 2 - 0.1, neck + 0.07), (sh / 2, neck + 0.07), (sh / 2 + swing + 0.02, hip + 0.1),
                     (sh / 2 + swing - 0.08, hip + 0.1)])]
    parts = [head, torso, *legs, *arms]
    details = [("skin", head), ("legs", unary_union(legs))]
    w = max(sh + 0.3, stride + leg_w + 0.1)
    return parts, details, w, h


def _cyclist(rng: np.random.Generator) -> tuple[list, list, float, float]:
    h = rng.uniform(1.65, 1.9)
    side = rng.random() < 0.65
    r = 0.34
    if side:
        base = rng.uniform(1.0, 1.15)
        wheels = _wheels([-base / 2, base / 2], r)
        frame = Polygon([(-base / 2, -r), (0.0, -r - 0.05), (base / 2, -r), (base / 2 - 0.15, -2 * r - 0.15),
                         (-0.1, -2 * r - 0.1)]).buffer(0.04)
        hip_y, hip_x = -2 * r - 0.3, -0.12
        head_r = 0.12
        torso = Polygon([(hip_x - 0.14, hip_y), (hip_x + 0.14, hip_y + 0.05), (0.35, -h + 0.35), (0.15, -h + 0.25)])
        head = _disc(0.3, -h + head_r, head_r)
        arm = Polygon([(0.18, -h + 0.35), (0.3, -h + 0.35), (base / 2 - 0.1, -2 * r - 0.2), (base / 2 - 0.2, -2 * r - 0.2)])
        leg = Polygon([(hip_x - 0.1, hip_y), (hip_x + 0.12, hip_y), (0.08, -r + 0.02), (-0.05, -r + 0.02)])
        parts = [*wheels, frame, torso, head, arm, leg]
        details = [("wheel", g) for g in wheels] + [("skin", head), ("frame", frame)]
        w = base + 2 * r
    else:
        wheel = box(-0.05, -2 * r, 0.05, 0.0)
        bar = box(-0.3, -2 * r - 0.35, 0.3, -2 * r - 0.3)
        sh = 0.42
        torso = _quad(-sh / 2, -h + 0.3, sh / 2, -h + 0.3, 0.15, -2 * r - 0.25, -0.15, -2 * r - 0.25)
        head = _disc(0.0, -h + 0.13, 0.13)
        legs = [box(-0.16, -2 * r - 0.3, -0.06, -0.3), box(0.06, -2 * r - 0.3, 0.16, -0.3)]
        parts = [wheel, bar, torso, head, *legs]
        details = [("wheel", wheel), ("skin", head), ("legs", unary_union(legs))]
        w = 0.7
    return parts, details, w, h


def _misc(rng: np.random.Generator) -> tuple[list, list, float, float]:
    kind = rng.integers(3)
    if kind == 0:  # a box-like object: trailer, container, cabinet
        w, h = rng.uniform(0.8, 3.5), rng.uniform(0.6, 2.4)
        body = box(-w / 2, -h, w / 2, 0.0).buffer(0.05 * min(w, h)).buffer(-0.05 * min(w, h))
        parts = [body]
        details = [("stripe", box(-w / 2 + 0.1 * w, -h * 0.6, w / 2 - 0.1 * w, -h * 0.5))]
    elif kind == 1:  # an irregular blob
        n = rng.integers(6, 11)
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = rng.uniform(0.5, 1.0, n)
        pts = np.stack([np.cos(ang) * rad, np.sin(ang) * rad], axis=1)
        blob = shapely.convex_hull(shapely.multipoints(pts)).buffer(0.25)
        scale = rng.uniform(0.4, 1.3)
        minx, miny, maxx, maxy = blob.bounds
        blob = shapely.affinity.translate(blob, -(minx + maxx) / 2, -maxy)
        blob = shapely.affinity.scale(blob, scale, scale * rng.uniform(0.7, 1.4), origin=(0, 0))
        parts = [blob]
        details = []
        w, h = blob.bounds[2] - blob.bounds[0], blob.bounds[3] - blob.bounds[1]
    else:  # a trailer / cart on wheels
        w, h = rng.uniform(1.8, 3.5), rng.uniform(1.0, 2.0)
        body = box(-w / 2, -h, w / 2, -0.35)
        hitch = box(w / 2, -0.55, w / 2 + 0.6, -0.45)
        wheels = _wheels([0.0], 0.3)
        parts = [body, hitch, *wheels]
        details = [("wheel", wheels[0])]
        w += 0.6
    return parts, details, w, h


_BUILDERS = {1: _cyclist, 2: _pedestrian, 4: _car, 5: _tram, 6: _truck, 7: _van, 8: _misc}


def _to_array(geom) -> np.ndarray:
    if geom.is_empty:
        return np.zeros((0, 2))
    if geom.geom_type != "Polygon":
        geom = max(geom.geoms, key=lambda g: g.area)
    return np.asarray(geom.exterior.coords, dtype=np.float64)[:-1]


@functools.lru_cache(maxsize=1)
def template_library() -> dict[int, tuple[Template, ...]]:
    """``category_id -> TEMPLATES_PER_CLASS`` templates, deterministic (fixed seed), cached."""
    rng = np.random.default_rng(_LIBRARY_SEED)
    library: dict[int, tuple[Template, ...]] = {}
    for cat, build in _BUILDERS.items():
        items = []
        for _ in range(TEMPLATES_PER_CLASS):
            parts, details, _, _ = build(rng)
            outline = unary_union(parts)
            n_vertices = int(rng.integers(26, 35))
            pts = reduce_outline(outline, n_vertices)
            # Recentre on the foot point: x centred, lowest point at y = 0.
            x_mid = 0.5 * (pts[:, 0].min() + pts[:, 0].max())
            y_bottom = pts[:, 1].max()
            shift = np.array([x_mid, y_bottom])
            pts = pts - shift
            dets = tuple((role, _to_array(g) - shift) for role, g in details if not g.is_empty)
            if rng.random() < 0.5:  # mirror: objects face both ways
                pts = pts * np.array([-1.0, 1.0])
                dets = tuple((role, a * np.array([-1.0, 1.0])) for role, a in dets)
            items.append(Template(
                category_id=cat,
                outline=pts,
                details=dets,
                width=float(np.ptp(pts[:, 0])),
                height=float(np.ptp(pts[:, 1])),
            ))
        library[cat] = tuple(items)
    return library
