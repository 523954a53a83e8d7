"""The one per-file metrics CSV of `score` and `evaluate`: what survives an interruption."""

from __future__ import annotations

import math

import pytest

from dfablate.errors import UserError
from dfablate.metrics import METRICS
from dfablate.scoring import COLUMNS, MetricsCsv, failed_row


def _row(name: str, first: float) -> dict:
    return {"file": name, **{m: first + i / 4 for i, m in enumerate(METRICS)}, "error": ""}


def test_finished_rows_survive_and_cut_lines_and_failures_do_not(tmp_path):
    path = tmp_path / "metrics.csv"
    results = MetricsCsv(path)
    results.append(_row("a.wav", 2.5))
    results.append(failed_row("b.wav", "PESQ found no speech"))
    path.write_text(path.read_text() + "c.wav,1.5,0.9")  # a kill in the middle of a line
    assert results.finished() == {"a.wav": _row("a.wav", 2.5)}
    assert results.finished(lambda name: name != "a.wav") == {}

    results.rewrite(results.finished().values())
    results.append(_row("c.wav", 1.0))
    values_a = ",".join(repr(2.5 + i / 4) for i in range(len(METRICS)))
    values_c = ",".join(repr(1.0 + i / 4) for i in range(len(METRICS)))
    assert path.read_text().splitlines() == [
        ",".join(COLUMNS),
        f"a.wav,{values_a},",
        f"c.wav,{values_c},",
    ]


def test_a_failure_is_written_as_nan_with_its_reason(tmp_path):
    path = tmp_path / "metrics.csv"
    MetricsCsv(path).rewrite([failed_row("b.wav", "no speech")])
    assert path.read_text().splitlines()[1] == "b.wav," + "nan," * len(METRICS) + "no speech"
    assert math.isnan(failed_row("b.wav", "x")["pesq"])


@pytest.mark.parametrize("content", [b"name,score\nx,1\n", b"\x89PNG\r\n\x1a\n\x00\xff"])
def test_another_file_is_refused_naming_it(tmp_path, content):
    path = tmp_path / "other.csv"
    path.write_bytes(content)
    with pytest.raises(UserError, match=f"{path} exists but is not a metrics CSV"):
        MetricsCsv(path).finished()
    assert path.read_bytes() == content
