"""Compare evaluated runs: B - A per metric against seed-to-seed spread, per-file tables, report.

The question answered: does variant B (e.g. the fixed normalisation) change quality against the
baseline A by more than retraining with another seed does? Every trained run adds its own offset
to all of its files' scores, so the headline treats the run as the unit: a t-test on per-run means
(`dfablate.comparison.seed_stats`). Per-file tables show where the difference comes from. Inputs are per-file
metric CSVs (`file,<metrics...>,error`), usually `<run_dir>/eval/<dataset>[@<G>dB]/metrics.csv`.
All metrics are "higher is better".

- `results`: `RunMetrics` (one run's scores) and `Comparison` (the outcome);
- `design`: the primary endpoint, margins (`MARGINS`), pairing and contrasts (`parse_design`);
- `loading`: metrics CSVs, gains, records, variant keys and variant names (`load_runs`);
- `stats`: `compare_runs` and its tests;
- `report`: tables, figures, `report.md`, the terminal summary;
- `wandb_log`: the comparison's W&B run.
"""
