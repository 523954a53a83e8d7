"""What a comparison asks: the primary endpoint, the smallest effect of interest per metric
(the margins), how runs are paired and which contrasts B:A are tested.

`MARGINS` is the one table of default margins: a new metric is one line here (the reasons for
each value are in docs/evaluation.md). A metric without a margin gets no equivalence test.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from dfablate.errors import UserError

MARGINS: dict[str, float] = {
    "pesq": 0.05,  # about the smallest PESQ change listeners and papers treat as real
    "csig": 0.05,  # composites: MOS-like 1-5 scales, as PESQ
    "cbak": 0.05,
    "covl": 0.05,
    "stoi": 0.005,  # 0.5 percentage points of intelligibility
    "ssnr": 0.5,  # dB
    "sisdr": 0.3,  # dB
    "dnsmos_sig": 0.05,  # DNSMOS: MOS-like 1-5 scales, as PESQ
    "dnsmos_bak": 0.05,
    "dnsmos_ovrl": 0.05,
    "dnsmos_p808": 0.05,
}
DEFAULT_PRIMARY = "pesq@0"
PAIRINGS = ("auto", "paired", "unpaired")
_PRIMARY = re.compile(r"^(?P<metric>[A-Za-z0-9_]+)@(?P<gain>[+-]?\d+(?:\.\d+)?)$")


@dataclass
class Design:
    """The settings of `compare --primary/--margin/--pairing/--contrast` (and of
    `ablate.compare.*`)."""

    primary_metric: str = "pesq"
    primary_gain_db: float = 0.0
    margins: dict[str, float] = field(default_factory=lambda: dict(MARGINS))
    pairing: str = "auto"
    contrasts: list[tuple[str, str]] = field(default_factory=list)  # (B, A); empty: each vs first

    @property
    def primary(self) -> str:
        return f"{self.primary_metric}@{self.primary_gain_db:g}"

    def margin(self, metric: str) -> float:
        return self.margins.get(metric, math.nan)


def parse_design(
    primary: str | None = None,
    margins: list[str] | dict | None = None,
    pairing: str | None = None,
    contrasts: list[str] | None = None,
    source: str = "--",
) -> Design:
    """Check and parse the settings; errors name the option (`--primary` or
    `ablate.compare.primary`, by `source`)."""
    plural = {"margin": "margins", "contrast": "contrasts"}  # the ablate.compare.* key names
    option = (
        (lambda name: f"--{name}")
        if source == "--"
        else (lambda name: f"{source}{plural.get(name, name)}")
    )
    primary = primary or DEFAULT_PRIMARY
    match = _PRIMARY.match(str(primary))
    if not match:
        raise UserError(f"{option('primary')} {primary}: expected METRIC@GAIN, e.g. pesq@0")
    table = dict(MARGINS)
    items = margins.items() if isinstance(margins, dict) else _split_pairs(margins, option)
    for metric, value in items:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not (math.isfinite(number) and number > 0):
            raise UserError(f"{option('margin')} {metric}={value}: must be a positive number")
        table[str(metric)] = number
    pairing = pairing or "auto"
    if pairing not in PAIRINGS:
        raise UserError(f"{option('pairing')} {pairing}: one of {', '.join(PAIRINGS)}")
    pairs = []
    for text in contrasts or []:
        b, sep, a = str(text).partition(":")
        if not sep or not a or not b or ":" in a:
            raise UserError(f"{option('contrast')} {text}: expected B:A, e.g. fixed:original")
        pairs.append((b, a))
    return Design(match["metric"], float(match["gain"]), table, pairing, pairs)


def _split_pairs(texts: list[str] | None, option) -> list[tuple[str, str]]:
    pairs = []
    for text in texts or []:
        metric, sep, value = str(text).partition("=")
        if not sep or not metric:
            raise UserError(f"{option('margin')} {text}: expected METRIC=VALUE, e.g. pesq=0.05")
        pairs.append((metric, value))
    return pairs


def resolve_contrasts(design: Design, variants: list[str]) -> list[tuple[str, str]]:
    """The contrasts to test: the design's, checked against the variants, else each variant
    against the first."""
    if not design.contrasts:
        return [(v, variants[0]) for v in variants[1:]]
    for b, a in design.contrasts:
        unknown = [v for v in (b, a) if v not in variants]
        if unknown or a == b:
            why = f"no variant {', '.join(unknown)}" if unknown else "B and A are the same"
            raise UserError(f"contrast {b}:{a}: {why} (variants: {', '.join(variants)})")
    return list(dict.fromkeys(design.contrasts))
