"""Evaluating a trained model on a test set.

- `testset`: which pairs are scored (`TestSet`, `load_test_set`) and input gains;
- `pipeline`: enhance + score every file, resumable (`evaluate_model`, `evaluate_checkpoint`);
- `wandb_log`: an evaluation's W&B run;
- `command`: `dfablate evaluate` from its Hydra config (checks, run/ckpt/upstream, summary).
"""
