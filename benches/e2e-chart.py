#!/usr/bin/env python3
"""Draws the end-to-end comparison chart (docs/e2e.svg) from the output of benches/e2e.sh.

    bash benches/e2e.sh | tee benches/results/e2e-latest.txt    # record a run
    python3 benches/e2e-chart.py                                  # redraw docs/e2e.svg from it
    python3 benches/e2e-chart.py --check                          # fail if the chart is stale (CI)
    python3 benches/e2e-chart.py RESULTS.txt OUT.svg              # any other run

One horizontal bar per scenario: marina-registry's median divided by CNCF Distribution's,
on a logarithmic axis, labelled with both medians. Lines of the input that are not scenario
lines (comments, the header, peak RSS, SHA-256) are ignored. Standard library only; the
output depends only on the input, so the chart can be checked for staleness byte for byte.
"""

import math
import os
import sys
from xml.sax.saxutils import escape

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_IN = os.path.join(HERE, "results", "e2e-latest.txt")
DEFAULT_OUT = os.path.join(HERE, "..", "docs", "e2e.svg")

UNITS = {"MBps": "MB/s", "ops_per_s": "ops/s", "push_MBps": "MB/s", "pull_MBps": "MB/s"}


def parse(text):
    """Scenario rows: (name, marina, distribution, unit), in input order."""
    rows = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5 or line.startswith("#") or fields[4] not in UNITS:
            continue
        try:
            marina, dist = float(fields[1]), float(fields[2])
        except ValueError:
            continue  # ERR: a failed scenario has no bar
        if marina > 0 and dist > 0:
            rows.append((fields[0], marina, dist, UNITS[fields[4]]))
    return rows


def title_of(text):
    for line in text.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return "benches/e2e.sh"


def figure(v):
    return f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"


def draw(rows, subtitle):
    label_w, bar_w, right_w = 210, 420, 190
    top, row_h, bottom = 58, 26, 40
    width = label_w + bar_w + right_w
    height = top + row_h * len(rows) + bottom
    max_ratio = max([r[1] / r[2] for r in rows] + [10.0])
    decades = math.ceil(math.log10(max_ratio))  # axis from 1x to 10^decades x

    def x_of(ratio):
        return label_w + bar_w * math.log10(max(ratio, 1.0)) / decades

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        '<text x="10" y="20" font-size="15" font-weight="bold">'
        "marina-registry vs CNCF Distribution 2.8, same machine, side by side</text>",
        f'<text x="10" y="38" fill="#555">{escape(subtitle)}</text>',
    ]
    # Grid: 1x, 2x, 5x, 10x, 20x, ...
    axis_y = top + row_h * len(rows)
    for d in range(decades + 1):
        for m in (1, 2, 5):
            ratio = m * 10 ** d
            if ratio > 10 ** decades:
                break
            x = x_of(ratio)
            out.append(
                f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{axis_y}" '
                f'stroke="{"#999" if m == 1 else "#ddd"}"/>'
            )
            out.append(
                f'<text x="{x:.1f}" y="{axis_y + 14}" text-anchor="middle" fill="#555">{ratio}×</text>'
            )
    out.append(
        f'<text x="{label_w + bar_w / 2:.0f}" y="{axis_y + 30}" text-anchor="middle" fill="#555">'
        "throughput ratio, marina / Distribution (median of the runs, log scale)</text>"
    )
    for i, (name, marina, dist, unit) in enumerate(rows):
        y = top + i * row_h
        ratio = marina / dist
        x_end = x_of(ratio)
        out.append(f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end">{escape(name)}</text>')
        out.append(
            f'<rect x="{label_w}" y="{y + 4}" width="{max(x_end - label_w, 1):.1f}" height="{row_h - 8}" '
            f'fill="{"#2b7bb9" if ratio >= 1 else "#c0392b"}"/>'
        )
        out.append(f'<text x="{x_end + 4:.1f}" y="{y + 16}" font-weight="bold">{ratio:.2f}×</text>')
        out.append(
            f'<text x="{label_w + bar_w + 52}" y="{y + 16}" fill="#555">'
            f"{figure(marina)} vs {figure(dist)} {unit}</text>"
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv):
    check = "--check" in argv
    args = [a for a in argv if a != "--check"]
    src = args[0] if args else DEFAULT_IN
    dst = args[1] if len(args) > 1 else DEFAULT_OUT
    with open(src) as f:
        text = f.read()
    rows = parse(text)
    if not rows:
        sys.exit(f"{src}: no scenario lines (the output of benches/e2e.sh)")
    svg = draw(rows, title_of(text))
    if check:
        current = open(dst).read() if os.path.exists(dst) else ""
        if current != svg:
            sys.exit(f"{dst} is not the chart of {src}: run python3 benches/e2e-chart.py")
        return
    with open(dst, "w") as f:
        f.write(svg)


if __name__ == "__main__":
    main(sys.argv[1:])
