"""A Report spec (`dfablate.wandb_report.spec`) as a `wandb_workspaces` Report object.

Building the objects needs no network; `Report.save()` (and the `_to_model()` it calls, which
looks each runset's project up) does. wandb-workspaces is the `wandb-report` extra.
"""

from __future__ import annotations

from typing import Any

from dfablate.errors import UserError

EXTRA_HINT = "pip install 'dfablate[wandb-report]'"


def require_workspaces(option: str = "--wandb-report") -> None:
    """UserError naming the extra when wandb-workspaces is not installed."""
    try:
        import wandb_workspaces.reports.v2  # noqa: F401
    except ImportError:
        raise UserError(f"{option} needs wandb-workspaces: {EXTRA_HINT}") from None


def build_report(spec: dict[str, Any], entity: str, app_url: str):
    """The `wandb_workspaces.reports.v2.Report` of `spec` in `entity`'s project."""
    import wandb_workspaces.reports.v2 as wr

    runsets = {}
    for runset in spec["runsets"]:
        runsets.setdefault(runset["kind"], []).append(_runset(wr, runset, entity))
    blocks = [_block(wr, block, runsets, entity, app_url) for block in spec["blocks"]]
    return wr.Report(
        project=spec["project"],
        entity=entity,
        title=spec["title"],
        description=spec["description"],
        blocks=blocks,
        width="fluid",
    )


def runset_filters(runset: dict[str, Any]) -> list:
    """The runset's filters: its group (when it has one), job_type, and the study's run ids
    (another study of the same name in the project is left out)."""
    from wandb_workspaces import expr

    filters = [expr.Metric("JobType") == runset["job_type"], expr.Metric("ID").isin(runset["runs"])]
    if runset["group"] is not None:
        filters.insert(0, expr.Metric("Group") == runset["group"])
    return filters


def _runset(wr, runset: dict[str, Any], entity: str):
    return wr.Runset(
        entity=entity,
        project=runset["project"],
        name=runset["name"],
        filters=runset_filters(runset),
    )


def _block(wr, block: dict[str, Any], runsets: dict[str, list], entity: str, app_url: str):
    kind = block["type"]
    if kind == "h1":
        return wr.H1(text=block["text"])
    if kind == "h2":
        return wr.H2(text=block["text"])
    if kind == "markdown":
        text = block["text"].replace("{app_url}", app_url.rstrip("/")).replace("{entity}", entity)
        return wr.MarkdownBlock(text=text)
    if kind == "panels":
        return wr.PanelGrid(
            runsets=runsets[block["runsets"]], panels=[_panel(wr, p) for p in block["panels"]]
        )
    raise ValueError(f"unknown block type {kind!r}")


def _panel(wr, panel: dict[str, Any]):
    layout = wr.Layout(w=panel.get("w", 8), h=panel.get("h", 6))
    kind = panel["type"]
    if kind == "bar":
        return wr.BarPlot(
            title=panel["title"], metrics=panel["metrics"], orientation="v",
            groupby=panel["groupby"], groupby_aggfunc="mean",
            groupby_rangefunc=panel["rangefunc"], layout=layout,
        )  # fmt: skip
    if kind == "line":
        return wr.LinePlot(
            title=panel["title"], x=panel["x"], y=panel["y"], groupby=panel["groupby"],
            groupby_aggfunc="mean", groupby_rangefunc=panel["rangefunc"], layout=layout,
        )  # fmt: skip
    if kind == "parallel":
        columns = [
            wr.ParallelCoordinatesPlotColumn(
                metric=wr.Config(c["config"]) if "config" in c else wr.SummaryMetric(c["summary"])
            )
            for c in panel["columns"]
        ]
        return wr.ParallelCoordinatesPlot(title=panel["title"], columns=columns, layout=layout)
    if kind == "media":
        return wr.MediaBrowser(media_keys=panel["keys"], layout=layout)
    if kind == "table":
        return wr.WeavePanelSummaryTable(table_name=panel["key"], layout=layout)
    raise ValueError(f"unknown panel type {kind!r}")
