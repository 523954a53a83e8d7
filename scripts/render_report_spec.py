"""Draw a comparison's W&B Report spec (`compare/wandb_report.json`) as its sections and panels.

    python scripts/render_report_spec.py outputs/demo/compare docs/img/demo_wandb_report.png

One row per block, top to bottom as in the Report: headings, text (its first lines), and panel
grids with one box per panel (its kind, title and the logged keys it reads) and the runs it is
drawn from (job_type and group). No W&B access: this is the spec, not a screenshot.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

from dfablate.wandb_report.spec import read_spec  # noqa: E402

PANEL_NAMES = {"bar": "bar chart", "line": "line plot", "parallel": "parallel coordinates",
               "media": "image", "table": "table"}  # fmt: skip
PANELS_PER_ROW = 4
WIDTH = 16.0


def panel_text(panel: dict) -> str:
    """A panel's kind, title and keys, wrapped for its box."""
    if panel["type"] == "parallel":
        keys = [c.get("config") or c["summary"] for c in panel["columns"]]
    else:
        keys = panel.get("metrics") or panel.get("y") or panel.get("keys") or [panel.get("key")]
    title = panel.get("title", "")
    lines = [PANEL_NAMES[panel["type"]].upper(), *textwrap.wrap(title, 34)]
    shown = ", ".join(keys[:4]) + (f" +{len(keys) - 4}" if len(keys) > 4 else "")
    lines += textwrap.wrap(shown, 36)
    return "\n".join(lines[:6])


def rows_of(spec: dict) -> list[tuple[str, object]]:
    """The drawing's rows: ("h1"/"h2"/"text", str) or ("panels", (runset label, panels))."""
    runsets = {}
    for runset in spec["runsets"]:
        runsets.setdefault(runset["kind"], []).append(
            f"job_type={runset['job_type']}, group={runset['group']} ({len(runset['runs'])} runs)"
        )
    rows: list[tuple[str, object]] = []
    for block in spec["blocks"]:
        if block["type"] in ("h1", "h2"):
            rows.append((block["type"], block["text"]))
        elif block["type"] == "markdown":
            lines = [line for line in block["text"].splitlines() if line.strip()][:3]
            rows.append(("text", "\n".join(textwrap.shorten(line, 150) for line in lines)))
        else:
            label = "; ".join(runsets[block["runsets"]])
            panels = block["panels"]
            for start in range(0, len(panels), PANELS_PER_ROW):
                rows.append(("panels", (label, panels[start : start + PANELS_PER_ROW])))
                label = ""
    return rows


HEIGHTS = {"h1": 0.55, "h2": 0.4, "text": 0.75, "panels": 1.75}


def render(spec: dict, out: Path) -> None:
    rows = rows_of(spec)
    height = sum(HEIGHTS[kind] for kind, _ in rows) + 0.8
    fig = plt.figure(figsize=(WIDTH, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, WIDTH)
    ax.set_ylim(0, height)
    ax.axis("off")
    y = height - 0.3
    ax.text(0.2, y, f"W&B Report: {spec['title']}  (project {spec['project']})",
            fontsize=15, weight="bold", va="top")  # fmt: skip
    y -= 0.5
    for kind, content in rows:
        y -= HEIGHTS[kind]
        if kind in ("h1", "h2"):
            ax.text(0.2 if kind == "h1" else 0.5, y + 0.1, content,
                    fontsize=13 if kind == "h1" else 11, weight="bold")  # fmt: skip
        elif kind == "text":
            ax.text(0.5, y + 0.65, content, fontsize=7, family="monospace", va="top")
        else:
            label, panels = content
            box_width = (WIDTH - 1.0) / PANELS_PER_ROW
            for i, panel in enumerate(panels):
                x = 0.5 + i * box_width
                ax.add_patch(FancyBboxPatch((x, y + 0.1), box_width - 0.2, 1.3,
                             boxstyle="round,pad=0.02", fc="#eef3fb", ec="#4a6fa5"))  # fmt: skip
                ax.text(x + 0.1, y + 1.3, panel_text(panel), fontsize=7, va="top")
            if label:
                ax.text(WIDTH - 0.5, y + 1.5, f"runs: {label}", fontsize=7, ha="right",
                        color="#555555")  # fmt: skip
    fig.savefig(out, dpi=80)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("compare_dir", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    spec = read_spec(args.compare_dir)
    if spec is None:
        raise SystemExit(f"{args.compare_dir}: no wandb_report.json")
    render(spec, args.out)
    print(args.out)


if __name__ == "__main__":
    main()
