"""Compare evaluated runs: B - A per metric against seed-to-seed spread, per-file tables, report.

The question answered: does variant B (e.g. the fixed normalisation) change quality against the
baseline A by more than retraining with another seed does? Every trained run adds its own offset
to all of its files' scores, so the headline treats the run as the unit: a t-test on per-run means
(`dfablate.seed_stats`). Per-file tables show where the difference comes from. Inputs are per-file
metric CSVs (`file,<metrics...>,error`), usually `<run_dir>/eval/<dataset>[@<G>dB]/metrics.csv`.
All metrics are "higher is better".

- `results`: `RunMetrics` (one run's scores) and `Comparison` (the outcome);
- `design`: the primary endpoint, margins (`MARGINS`), pairing and contrasts (`parse_design`);
- `loading`: metrics CSVs, gains, run identities and variant names (`load_runs`);
- `stats`: `compare_runs` and its tests;
- `report`: tables, figures, `report.md`, the terminal summary;
- `wandb_log`: the comparison's W&B run.
"""

from dfablate.comparison.design import MARGINS, Design, parse_design
from dfablate.comparison.loading import describe_identity, load_evaluation, load_runs, read_scores
from dfablate.comparison.report import (
    default_out_dir,
    headline_table,
    markdown_table,
    print_summary,
    spread_notes,
    write_figures,
    write_outputs,
    write_report,
)
from dfablate.comparison.results import Comparison, RunMetrics, gain_suffix
from dfablate.comparison.stats import (
    compare_runs,
    is_paired,
    relative_difference_pct,
    seed_spread_status,
    wilcoxon_p,
)
from dfablate.comparison.wandb_log import log_comparison_to_wandb

__all__ = [
    "MARGINS",
    "Comparison",
    "Design",
    "RunMetrics",
    "compare_runs",
    "default_out_dir",
    "describe_identity",
    "gain_suffix",
    "headline_table",
    "is_paired",
    "load_evaluation",
    "load_runs",
    "log_comparison_to_wandb",
    "markdown_table",
    "parse_design",
    "print_summary",
    "read_scores",
    "relative_difference_pct",
    "seed_spread_status",
    "spread_notes",
    "wilcoxon_p",
    "write_figures",
    "write_outputs",
    "write_report",
]
