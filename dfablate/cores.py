"""How many processes or threads a command uses: one rule for every `jobs` and `num_threads`
option (`score --jobs`, `data verify --jobs`, `evaluate jobs=`/`num_threads=`, `train
num_threads=`, `ablate.evaluate.jobs`): a whole number, 0 or unset for all cores, at least 1
for that many; anything else is refused naming the option."""

from __future__ import annotations

from dfablate.errors import UserError


def check_core_count(value: object, option: str) -> int | None:
    """`value` as a count (None: all cores; 0 is the same as None); UserError otherwise."""
    if value is None:
        return None
    count = value
    if isinstance(value, str):
        try:
            count = int(value)
        except ValueError:
            pass
    if isinstance(count, bool) or not isinstance(count, int):
        raise UserError(f"{option}={value}: must be a whole number (0 or unset: all cores)")
    if count < 0:
        raise UserError(f"{option}={value}: must be at least 0 (0 or unset: all cores)")
    return count or None
