"""A comparison's W&B Report: its spec (`spec`), the wandb-workspaces objects (`build`), and
saving or pushing it (`publish`). wandb-workspaces is the optional `wandb-report` extra."""
