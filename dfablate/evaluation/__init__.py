"""Evaluating a trained model on a test set.

- `testset`: which pairs are scored (`TestSet`, `load_test_set`) and input gains;
- `pipeline`: enhance + score every file, resumable (`evaluate_model`, `evaluate_checkpoint`);
- `wandb_log`: an evaluation's W&B run;
- `command`: `dfablate evaluate` from its Hydra config (checks, run/ckpt/upstream, summary).
"""

from dfablate.evaluation.command import (
    check_evaluate_options,
    evaluate_from_config,
    evaluate_upstream,
    summary_table,
)
from dfablate.evaluation.pipeline import (
    PIPELINE_VERSION,
    Evaluation,
    default_noisy_cache_dir,
    evaluate_checkpoint,
    evaluate_model,
    is_evaluated,
    noisy_cache_path,
    score_file,
    summarise,
)
from dfablate.evaluation.testset import (
    TestSet,
    check_gain_db,
    gain_dir_name,
    gain_factor,
    load_test_set,
)
from dfablate.evaluation.wandb_log import log_evaluation_to_wandb

__all__ = [
    "PIPELINE_VERSION",
    "Evaluation",
    "TestSet",
    "check_evaluate_options",
    "check_gain_db",
    "default_noisy_cache_dir",
    "evaluate_checkpoint",
    "evaluate_from_config",
    "evaluate_model",
    "evaluate_upstream",
    "gain_dir_name",
    "gain_factor",
    "is_evaluated",
    "load_test_set",
    "log_evaluation_to_wandb",
    "noisy_cache_path",
    "score_file",
    "summarise",
    "summary_table",
]
