"""dfablate's Hydra configs, shipped inside the package so a built wheel runs from any folder.

Hydra finds them through the search path `pkg://dfablate.configs`; user config folders join
it with `--config-dir DIR` or `hydra.searchpath=[file://DIR]` (see `dfablate.config`).
"""
