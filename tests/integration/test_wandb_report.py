"""The study's W&B Report: its spec written offline, built with wandb-workspaces (only the API's
project look-up replaced, as wandb-workspaces' own tests do), checked against the runs read back
from their offline files; saving and `wandb-report push` through the real wandb.Api against a
stub W&B server on 127.0.0.1 (tests/wandb_stub.py)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from helpers import seed_study, write_csv
from wandb_offline import read_offline_run

from dfablate.cli import main
from dfablate.comparison.loading import load_runs
from dfablate.comparison.stats import compare_runs
from dfablate.wandb_report.build import build_report
from dfablate.wandb_report.publish import ReportPublisher
from dfablate.wandb_report.spec import PER_FILE_RUNS_KEY, REPORT_URL_KEY, merged_per_file, read_spec

pytest.importorskip("wandb_workspaces", reason="the wandb-report extra is not installed")
APP_URL = "https://wandb.test"


class FakeService:
    """The GraphQL transport of wandb.Api, answering only the runsets' project look-up."""

    app_url = APP_URL

    def execute_graphql(self, query: str, variables: dict | None = None) -> dict:
        assert "ProjectInternalId" in query, query
        return {"project": {"internalId": "UHJvamVjdDox"}}


class FakeApi:
    """wandb.Api as building a Report offline uses it: the project look-up only."""

    default_entity = "team"

    def __init__(self) -> None:
        self._service_api = FakeService()


@pytest.fixture()
def fake_api(monkeypatch) -> FakeApi:
    from wandb_workspaces.reports.v2 import interface

    api = FakeApi()
    monkeypatch.setattr(interface, "_get_api", lambda: api)
    return api


def _runsets_and_panels(report) -> list[tuple[list[dict], list[dict]]]:
    """(runsets, panels) of every panel grid of the built Report's W&B spec."""
    spec = json.loads(report._to_model().spec.model_dump_json(by_alias=True, exclude_none=True))
    grids = [b for b in spec["blocks"] if b["type"] == "panel-grid"]
    return [
        (g["metadata"]["runSets"], g["metadata"]["panelBankSectionConfig"]["panels"]) for g in grids
    ]


def _filters(runset: dict) -> dict[str, object]:
    return {f["key"]["name"]: f["value"] for f in runset["filters"]["filters"]}


def _selected(runs: list, filters: dict[str, object]) -> set[str]:
    """Ids of `runs` (read back offline) that a runset's filters select."""
    return {
        r.run["id"]
        for r in runs
        if r.run["group"] == filters.get("group", r.run["group"])
        and r.run["job_type"] == filters["jobType"]
        and r.run["id"] in filters["name"]
    }


LOGGED_ABLATION = pytest.mark.xdist_group("wandb_logged_ablation")  # one process runs it once


@dataclass(frozen=True)
class LoggedAblation:
    """A real ablation logged offline (2 norms, 1 training step each, 2 input gains): its
    report spec and its runs read back from their offline files."""

    spec: dict
    logged: dict[str, list]  # kind (train, eval, compare): its runs, read back
    expected: dict[str, set[str]]  # kind: the ids of its runs

    @property
    def everything(self) -> list:
        return [run for runs in self.logged.values() for run in runs]

    @property
    def panel_blocks(self) -> list[dict]:
        return [b for b in self.spec["blocks"] if b["type"] == "panels"]


@pytest.fixture(scope="module")
def logged_ablation(tmp_path_factory) -> LoggedAblation:
    base = tmp_path_factory.mktemp("logged-ablation")
    out = base / "outputs"
    args = [
        "ablate", "experiment=norm_ablation", "norm=original,fixed", "seed=0",
        "model=dfn3_tiny", "data=mini", "trainer=cpu", "logger=wandb", f"output_root={out}",
        "num_threads=1", "trainer.max_epochs=1", "trainer.limit_train_batches=1",
        "trainer.limit_val_batches=1", "trainer.log_every_n_steps=1", "validate_first=false",
        "val_metric_utterances=0", "callbacks.media=null", "callbacks.progress_bar=null",
        "callbacks.early_stopping=null", "ablate.evaluate.jobs=1", "ablate.evaluate.max_files=2",
        "ablate.evaluate.input_gains_db=[0,-6]",
    ]  # fmt: skip
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DFABLATE_CACHE", str(base / "cache"))
        assert main(args) == 0
    study = out / "norm_ablation"
    compare_dir = study / "compare"
    run_dirs = [study / f"{norm}-seed0" for norm in ("original", "fixed")]
    logged = {
        "train": [read_offline_run(d / "wandb") for d in run_dirs],
        "eval": [
            read_offline_run(d / "eval" / where / "wandb")
            for d in run_dirs
            for where in ("mini-2files", "mini-2files@-6dB")
        ],  # fmt: skip
        "compare": [read_offline_run(compare_dir / "wandb")],
    }
    expected = {kind: {r.run["id"] for r in runs} for kind, runs in logged.items()}
    return LoggedAblation(read_spec(compare_dir), logged, expected)


@pytest.mark.slow
@LOGGED_ABLATION
def test_ablation_report_spec_names_the_study_and_its_runs(logged_ablation):
    spec = logged_ablation.spec
    assert spec is not None and spec["entity"] is None  # resolved when pushed
    assert spec["command"].startswith("dfablate ablate experiment=norm_ablation")
    records = spec["runs"]
    assert {kind: {r["id"] for r in runs} for kind, runs in records.items()} == (
        logged_ablation.expected
    )


@pytest.mark.slow
@LOGGED_ABLATION
def test_ablation_report_runsets_select_exactly_the_study(logged_ablation, fake_api):
    expected, everything = logged_ablation.expected, logged_ablation.everything
    grids = _runsets_and_panels(build_report(logged_ablation.spec, "team", APP_URL))
    spec_grids = logged_ablation.panel_blocks
    assert len(grids) == len(spec_grids) and {b["runsets"] for b in spec_grids} == set(expected)
    for (runsets, panels), block in zip(grids, spec_grids, strict=True):
        assert len(panels) == len(block["panels"])
        kind = block["runsets"]
        for runset in runsets:
            filters = _filters(runset)
            assert _selected(everything, filters) == expected[kind]
            by_group_and_type = {
                r.run["id"] for r in everything
                if r.run["group"] == filters["group"] and r.run["job_type"] == filters["jobType"]
            }  # fmt: skip
            assert by_group_and_type == expected[kind]  # group and job_type alone suffice here


@pytest.mark.slow
@LOGGED_ABLATION
def test_ablation_report_panels_read_only_logged_keys(logged_ablation):
    for block in logged_ablation.panel_blocks:
        for panel in block["panels"]:
            _assert_logged(panel, logged_ablation.logged[block["runsets"]])


@pytest.mark.slow
@LOGGED_ABLATION
def test_ablation_report_has_its_panels_and_links_to_the_runs(logged_ablation):
    kinds = [p["type"] for b in logged_ablation.panel_blocks for p in b["panels"]]
    assert kinds.count("bar") == 2 * 7 and kinds.count("line") == 2  # 7 metrics x 2 gains
    assert {"parallel", "media", "table"} <= set(kinds)
    spec = logged_ablation.spec
    links = [b["text"] for b in spec["blocks"] if b["type"] == "markdown"][-1]
    for run in logged_ablation.logged["eval"] + logged_ablation.logged["compare"]:
        assert f"{{app_url}}/{{entity}}/dfablate/runs/{run.run['id']}" in links


def _assert_logged(panel: dict, runs: list) -> None:
    """Every key a panel reads exists in the runs it is drawn from (each key in some run; a
    training curve in every training run's history)."""
    summaries = [r.summary for r in runs]
    if panel["type"] in ("bar",):
        for key in panel["metrics"]:
            assert any(key in s for s in summaries), key
        assert all(r.config["norm"]["name"] for r in runs)  # the group-by key
    elif panel["type"] == "line":
        for run in runs:
            for key in panel["y"]:
                assert run.series(key), key
            assert run.series(panel["x"])
    elif panel["type"] == "parallel":
        for column in panel["columns"]:
            if "config" in column:
                head, *rest = column["config"].split(".")
                value = runs[0].config[head]
                for part in rest:
                    value = value[part]
            else:
                assert any(column["summary"] in s for s in summaries), column
    elif panel["type"] == "media":
        for key in panel["keys"]:
            assert summaries[0][key]["_type"] == "image-file"
    elif panel["type"] == "table":
        assert summaries[0][panel["key"]]["_type"] == "table-file"
    else:
        raise AssertionError(panel)


def test_bare_csvs_get_a_spec_without_network(tmp_path, capsys, fake_api, monkeypatch):
    """Metrics CSVs with no W&B runs: the spec holds the compare run's sections; no credentials
    or network are needed to write it."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    runs = seed_study(tmp_path / "runs")
    csvs = [r / "eval" / "mini" / "metrics.csv" for r in runs]
    labels = [arg for r in runs for arg in ("--label", r.name.split("-")[0])]
    out = tmp_path / "cmp"
    code = main(["compare", *map(str, csvs), *labels, "--out", str(out), "--wandb", "offline",
                 "--wandb-report"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert f"dfablate wandb-report push {out}" in capsys.readouterr().out
    spec = read_spec(out)
    assert [r["kind"] for r in spec["runsets"]] == ["compare"]
    assert spec["runs"]["train"] == [] and spec["runs"]["eval"] == []
    logged = read_offline_run(out / "wandb")
    assert spec["runs"]["compare"][0]["id"] == logged.run["id"]
    ((runsets, panels),) = [g for g in _runsets_and_panels(build_report(spec, "t", APP_URL))][:1]
    assert _selected([logged], _filters(runsets[0])) == {logged.run["id"]}
    tables = [p for b in spec["blocks"] if b["type"] == "panels" for p in b["panels"]]
    for panel in tables:
        _assert_logged(panel, [logged])
    assert logged.summary[PER_FILE_RUNS_KEY]["nrows"] == 6 * 5  # 6 runs x 5 files


def test_merged_per_file_table_by_hand(tmp_path):
    """Each run's score on each file, and minus the baseline's mean over its seeds there."""
    files = ["a.wav", "b.wav"]
    paths = [
        write_csv(tmp_path / name, {"pesq": scores}, files)
        for name, scores in (("o1.csv", [2.0, 3.0]), ("o2.csv", [2.2, 3.4]),
                             ("f1.csv", [2.5, 3.0]), ("f2.csv", [2.0, 3.6]))
    ]  # fmt: skip
    labels = ["o", "o", "f", "f"]
    comparison = compare_runs(*load_runs(paths, labels=labels))
    table = merged_per_file(comparison).set_index(["variant", "file"]).sort_index()
    assert len(table) == 8
    f_on_b = table.loc[("f", "b.wav")]
    np.testing.assert_allclose(sorted(f_on_b["pesq"]), [3.0, 3.6])
    np.testing.assert_allclose(sorted(f_on_b["pesq_b_minus_a"]), [3.0 - 3.2, 3.6 - 3.2])
    np.testing.assert_allclose(table.loc[("o", "a.wav"), "pesq_b_minus_a"], [-0.1, 0.1])


@pytest.fixture()
def stub_server(monkeypatch):
    """A stub W&B server on 127.0.0.1 that the real wandb.Api talks to (credentials set)."""
    from wandb_stub import stub_wandb_server

    with stub_wandb_server() as (url, stub):
        monkeypatch.setenv("WANDB_BASE_URL", url)
        monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
        stub.url = url
        yield stub


@pytest.fixture()
def offline_comparison(tmp_path, capsys) -> Path:
    runs = seed_study(tmp_path / "runs")
    out = tmp_path / "cmp"
    code = main(["compare", *map(str, runs), "--out", str(out), "--wandb", "offline",
                 "--wandb-report"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    return out


def _files(folder: Path) -> dict[Path, bytes]:
    """The folder's files and contents; W&B's own run folder left out (its service may still be
    writing the offline run after the compare command returned) but for `.synced` markers."""
    return {
        p: p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ("wandb" not in p.relative_to(folder).parts or p.suffix == ".synced")
    }


def test_push_refuses_without_credentials_then_unsynced_runs(
    offline_comparison, tmp_path, monkeypatch, capsys
):
    out = offline_comparison
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc
    before = _files(out)
    assert main(["wandb-report", "push", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no W&B credentials" in err
    assert _files(out) == before

    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert main(["wandb-report", "push", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "not synced" in err and str((out / "wandb").resolve()) in err
    assert _files(out) == before


def test_push_saves_the_report_on_a_stub_server(offline_comparison, stub_server, capsys):
    """After `wandb sync`, push saves the Report through the real wandb.Api (HTTP to a stub
    server): in the default entity, links resolved; URL in report.md and the run's summary."""
    out = offline_comparison
    run_id = read_spec(out)["runs"]["compare"][0]["id"]
    (run_file,) = (out / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb")
    run_file.with_name(run_file.name + ".synced").touch()  # what `wandb sync` leaves
    assert main(["wandb-report", "push", str(out)]) == 0
    url = f"{stub_server.url}/team/dfablate/reports/fixed-vs-original--VmlldzoxMjM0"
    assert capsys.readouterr().out.strip().endswith(f"W&B Report: {url}")
    (saved,) = stub_server.saved_views
    assert saved["entityName"] == "team" and saved["projectName"] == "dfablate"
    assert f"{stub_server.url}/team/dfablate/runs/{run_id}" in saved["spec"]  # links resolved
    assert stub_server.summaries[stub_server.run_ids[run_id]] == {REPORT_URL_KEY: url}
    assert (out / "report.md").read_text().rstrip().endswith(f"W&B Report: {url}")


def test_push_without_a_spec_is_one_line(tmp_path, capsys):
    assert main(["wandb-report", "push", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no wandb_report.json" in err


def test_online_compare_run_saves_the_report(tmp_path, stub_server):
    """With an online compare run the Report is saved at once (real wandb.Api, stub server):
    URL in report.md and in the run's summary; a failed save is a warning naming push."""
    runs = seed_study(tmp_path / "runs")
    comparison = compare_runs(*load_runs(runs))
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "report.md").write_text("# Comparison\n")
    publisher = ReportPublisher(comparison, out, project="dfablate", command="dfablate compare")
    run = SimpleNamespace(offline=False, entity="lab", summary={})
    publisher(run)
    assert publisher.url == run.summary[REPORT_URL_KEY]
    assert publisher.url.startswith(f"{stub_server.url}/lab/dfablate/reports/")
    assert stub_server.saved_views[0]["entityName"] == "lab"
    assert (out / "report.md").read_text().endswith(f"W&B Report: {publisher.url}\n")
    assert read_spec(out)["title"] == "fixed vs original"

    stub_server.answer = lambda query, variables: {}  # the server stops answering sensibly
    again = ReportPublisher(comparison, out, project="dfablate", command="dfablate compare")
    with pytest.warns(UserWarning, match="could not be saved.*wandb-report push"):
        again(SimpleNamespace(offline=False, entity="lab", summary={}))
    assert again.url is None and again.spec_path.is_file()


def test_without_the_extra_compare_refuses_and_ablate_skips(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb_workspaces", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "wandb_workspaces.reports.v2", None)
    runs = seed_study(tmp_path / "runs")
    out = tmp_path / "cmp"
    assert main(["compare", *map(str, runs), "--out", str(out), "--wandb-report"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "dfablate[wandb-report]" in err
    assert not out.exists()

    from omegaconf import OmegaConf

    from dfablate.ablate import report_publisher

    settings = OmegaConf.create({"wandb": {"mode": "offline", "project": "p", "report": True}})
    plan = SimpleNamespace(settings=settings)
    with pytest.warns(UserWarning, match=r"dfablate\[wandb-report\].*skipping the Report"):
        assert report_publisher(plan, None, out) is None
    settings.wandb.mode = "disabled"
    assert report_publisher(plan, None, out) is None  # W&B disabled: no Report, no warning


def test_headline_shows_answers_and_the_columns_present():
    from dfablate.wandb_report.spec import headline_markdown

    today = pd.DataFrame({"variant": ["fixed"], "metric": ["pesq"], "mean_diff": [0.1],
                          "ci95_low": [0.0], "ci95_high": [0.2], "a_seeds": [3]})  # fmt: skip
    text = headline_markdown(today)
    assert (
        text.splitlines()[0] == "| variant | metric | mean_diff | ci95_low | ci95_high | a_seeds |"
    )
    later = today.assign(verdict=["equivalent"], ci90_low=[0.01], ci90_high=[0.19])
    text = headline_markdown(later, ["fixed is equivalent to original on PESQ."])
    assert text.startswith("- fixed is equivalent to original on PESQ.\n")
    assert "verdict" in text and "ci90_low" in text and "equivalent" in text


def test_compare_with_wandb_disabled_writes_the_report_spec_and_no_run(
    tmp_path, monkeypatch, capsys
):
    """W&B disabled: no W&B run, no wandb/ folder, and the Report's spec is still written."""
    monkeypatch.delenv("WANDB_MODE", raising=False)
    runs = seed_study(tmp_path / "runs")
    out = tmp_path / "cmp"
    code = main(["compare", *map(str, runs), "--out", str(out), "--wandb", "disabled",
                 "--wandb-report"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert not list(out.rglob("wandb"))
    spec = read_spec(out)
    assert (
        spec is not None and spec["project"] == "dfablate" and spec["title"] == "fixed vs original"
    )
    assert f"dfablate wandb-report push {out}" in capsys.readouterr().out
