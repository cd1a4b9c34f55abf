#!/usr/bin/env python3
"""Issue #6's agreement check: does Grapevine file points into the same ward as an independent reference?

Grapevine's answer comes from `Boundaries::locate` on the bundled wards, through the `locate-points` binary of the
tests package. The reference is Shapely (GEOS): candidate wards from an STRtree over the ward polygons, then
`covers` on prepared polygons, with the same border rule as Grapevine (inside or on the boundary counts; of several
covering wards, the smallest code wins).

The points: N seeded uniform random points over the wards' bounding box (default 100,000), and then every distinct
ward vertex and the midpoint of every distinct ward edge, where the border rule decides. A vertex is exactly on the
boundary; a midpoint is within rounding (about 1e-11 m) of it.

A disagreement is allowed only within the tolerance of the border between the two answers (the boundary of the ward
either side named; for "outside" on one side, the boundary of the ward the other side named). Both sides decide with
exact orientation tests, so a disagreement can only come from a point within rounding of a border, and GPS fixes are
metres wide; the default tolerance is 1 mm, a million times the rounding and a thousandth of a good fix. Any
disagreement farther from the border than that makes the script exit 1.

    pip install -r scripts/requirements.txt
    python3 scripts/geotag-agreement.py [--points 100000] [--seed 6] [--tolerance-m 0.001]

It runs `cargo run --release -q -p grapevine-tests --bin locate-points` from the repository root (pass
`--locate-points PATH` to use a binary already built).
"""

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import shapely

REPO = Path(__file__).resolve().parent.parent
WARDS = REPO / "server" / "data" / "boundaries" / "staffordshire-wards-2013.geojson"
CODE_FIELD = "WD13CD"
EARTH_RADIUS_M = 6_371_008.8


def load_wards():
    """The ward polygons, sorted by code (so a ward's index is its rank in the border rule)."""
    collection = json.loads(WARDS.read_text())
    wards = sorted(
        ((feature["properties"][CODE_FIELD], shapely.geometry.shape(feature["geometry"])) for feature in collection["features"]),
        key=lambda ward: ward[0],
    )
    codes = [code for code, _ in wards]
    polygons = np.array([polygon for _, polygon in wards], dtype=object)
    return codes, polygons


def border_points(polygons):
    """Every distinct vertex of every ward ring, and the midpoint of every distinct edge."""
    vertices, edges = set(), set()
    for polygon in polygons:
        for ring in [polygon.exterior, *polygon.interiors] if polygon.geom_type == "Polygon" else [
            ring for part in polygon.geoms for ring in [part.exterior, *part.interiors]
        ]:
            coords = [tuple(xy) for xy in ring.coords]
            vertices.update(coords)
            edges.update(tuple(sorted(pair)) for pair in zip(coords, coords[1:]))
    midpoints = {((a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0) for a, b in edges}
    return np.array(sorted(vertices)), np.array(sorted(midpoints - vertices))


def grapevine(points, locate_points):
    """Grapevine's code for each point ('' for outside), through the locate-points binary."""
    command = [locate_points] if locate_points else [
        "cargo", "run", "--release", "-q", "-p", "grapevine-tests", "--bin", "locate-points",
    ]
    # repr() is the shortest text that reads back as the same double, so both sides see bit-identical points.
    text = "".join(f"{lon!r},{lat!r}\n" for lon, lat in points.tolist())
    result = subprocess.run(command, input=text, capture_output=True, text=True, cwd=REPO, check=False)
    if result.returncode != 0:
        sys.exit(f"locate-points failed ({result.returncode}):\n{result.stderr}")
    lines = result.stdout.splitlines()
    if len(lines) != len(points):
        sys.exit(f"locate-points answered {len(lines)} lines for {len(points)} points")
    codes = []
    for line, (lon, lat) in zip(lines, points.tolist()):
        lon_text, lat_text, code = line.split(",")
        if (float(lon_text), float(lat_text)) != (lon, lat):
            sys.exit(f"locate-points answered out of order: {line!r} for {lon!r},{lat!r}")
        codes.append(code)
    return codes


def reference(points, codes, polygons):
    """Shapely's code for each point ('' for outside): STRtree candidates, prepared covers, smallest code wins."""
    shapely.prepare(polygons)
    geometries = shapely.points(points)
    tree = shapely.STRtree(polygons)
    point_idx, ward_idx = tree.query(geometries)  # bounding-box candidates only
    covered = shapely.covers(polygons[ward_idx], geometries[point_idx])
    best = np.full(len(points), len(codes))
    np.minimum.at(best, point_idx[covered], ward_idx[covered])
    return ["" if rank == len(codes) else codes[rank] for rank in best.tolist()]


def to_metres(coords, lat0):
    """A local equirectangular projection: fine for distances of metres and less."""
    scale = EARTH_RADIUS_M * math.pi / 180.0
    return np.column_stack([coords[:, 0] * scale * math.cos(math.radians(lat0)), coords[:, 1] * scale])


def border_distance_m(point, names, by_code):
    """Metres from the point to the boundary of the wards named (the border the two answers disagree about)."""
    lon, lat = point
    distances = []
    for code in names:
        if code:
            boundary = shapely.transform(by_code[code].boundary, lambda coords: to_metres(coords, lat))
            here = shapely.points(to_metres(np.array([[lon, lat]]), lat))[0]
            distances.append(shapely.distance(boundary, here))
    return min(distances)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=100_000, help="random points over the wards' bounding box")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--tolerance-m", type=float, default=0.001, help="how near a border a disagreement may be")
    parser.add_argument("--locate-points", help="a built locate-points binary (default: cargo run it)")
    args = parser.parse_args()

    codes, polygons = load_wards()
    invalid = [code for code, polygon in zip(codes, polygons) if not polygon.is_valid]
    min_x, min_y, max_x, max_y = shapely.total_bounds(polygons)
    rng = np.random.default_rng(args.seed)
    random_points = np.column_stack([rng.uniform(min_x, max_x, args.points), rng.uniform(min_y, max_y, args.points)])
    vertices, midpoints = border_points(polygons)
    groups = [
        (f"random over the bounding box (seed {args.seed})", random_points),
        ("ward vertices (exactly on a border)", vertices),
        ("ward edge midpoints (within rounding of a border)", midpoints),
    ]
    points = np.concatenate([group for _, group in groups])

    ours = grapevine(points, args.locate_points)
    theirs = reference(points, codes, polygons)
    by_code = dict(zip(codes, polygons))

    print(f"{len(codes)} wards ({len(invalid)} invalid in GEOS's eyes{': ' + ', '.join(invalid) if invalid else ''}); "
          f"shapely {shapely.__version__}, GEOS {shapely.geos_version_string}; tolerance {args.tolerance_m} m")
    print(f"{'points':<52} {'total':>8} {'agree':>8} {'of which outside':>17} {'differ <= tol':>14} {'differ > tol':>13}")
    beyond_all = []
    farthest_within = 0.0
    start = 0
    for label, group in groups:
        end = start + len(group)
        agree = outside = within = 0
        for idx in range(start, end):
            if ours[idx] == theirs[idx]:
                agree += 1
                outside += ours[idx] == ""
                continue
            distance = border_distance_m(points[idx], (ours[idx], theirs[idx]), by_code)
            if distance <= args.tolerance_m:
                within += 1
                farthest_within = max(farthest_within, distance)
            else:
                beyond_all.append((tuple(points[idx].tolist()), ours[idx], theirs[idx], distance))
        beyond = len(group) - agree - within
        print(f"{label:<52} {len(group):>8} {agree:>8} {outside:>17} {within:>14} {beyond:>13}")
        start = end

    print(f"farthest tolerated disagreement: {farthest_within:.3g} m from the border")
    for (lon, lat), our_code, their_code, distance in beyond_all[:20]:
        print(f"  beyond tolerance: {lon!r},{lat!r}: Grapevine {our_code or 'outside'}, "
              f"Shapely {their_code or 'outside'}, {distance:.3g} m from the border")
    if beyond_all:
        print(f"FAIL: {len(beyond_all)} disagreement(s) farther than {args.tolerance_m} m from a border")
        return 1
    print("OK: every disagreement (if any) is within the tolerance of a border")
    return 0


if __name__ == "__main__":
    sys.exit(main())
