"""`dfablate score CLEAN ENHANCED`: speech-quality metrics of enhanced files into a CSV."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dfablate.errors import Interrupted, UserError

MAX_LISTED_FAILURES = 10


def _core_count(text: str) -> int | None:
    from dfablate.cores import check_core_count
    from dfablate.errors import UserError

    try:
        return check_core_count(text, "--jobs")
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "score",
        help="score enhanced files against clean references (PESQ, STOI, CSIG, ...)",
        description=(
            "Score ENHANCED against the clean reference CLEAN: two audio files, or two "
            "directories whose .wav/.flac files are paired by name. Writes one row per file "
            "(file,<metrics>,error; by default file,pesq,stoi,csig,cbak,covl,ssnr,sisdr,error) "
            "and prints the means. Rows are "
            "written as they finish: rerunning an interrupted command resumes it. Pairs that "
            "cannot be scored (silent reference, NaN samples, unreadable file, stereo, "
            "different rates or lengths, truncated file, file on one side only) get NaN metrics and "
            "a reason. An existing CSV with rows for other files is refused unless --force."
        ),
    )
    parser.add_argument("clean", type=Path, metavar="CLEAN", help="clean reference file or dir")
    parser.add_argument("enhanced", type=Path, metavar="ENHANCED", help="enhanced file or dir")
    parser.add_argument(
        "--out", type=Path, default=Path("metrics.csv"), help="CSV file (default: metrics.csv)"
    )
    parser.add_argument(
        "--jobs", type=_core_count, help="worker processes (default, or 0: all cores)"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace an --out CSV that holds the results of other files",
    )
    parser.add_argument(
        "--metrics",
        default=None,
        help="comma-separated metrics or groups, e.g. pesq,dnsmos (dnsmos: dnsmos_sig, "
        "dnsmos_bak, dnsmos_ovrl, dnsmos_p808; needs the dnsmos extra). Default: pesq,stoi,"
        "csig,cbak,covl,ssnr,sisdr",
    )
    parser.set_defaults(handler=run)


def print_summary(frame, out_csv: Path) -> None:
    """Means of each metric over the scored files, counts, and the first failures."""
    from rich.console import Console
    from rich.table import Table

    metrics = [c for c in frame.columns if c not in ("file", "error")]
    scored = frame[frame["error"] == ""]
    failed = frame[frame["error"] != ""]
    table = Table()
    table.add_column("metric")
    table.add_column("mean", justify="right")
    for metric in metrics:
        mean = scored[metric].mean()
        table.add_row(metric, "-" if scored.empty else f"{mean:.4f}")
    console = Console()
    console.print(table)
    console.print(f"scored: {len(scored)}, failed: {len(failed)}; rows in {out_csv}", markup=False)
    if not failed.empty:
        err = Console(stderr=True, highlight=False, soft_wrap=True)
        for name, error in list(zip(failed["file"], failed["error"], strict=True))[
            :MAX_LISTED_FAILURES
        ]:
            err.print(f"failed: {name}: {error}", markup=False)
        if len(failed) > MAX_LISTED_FAILURES:
            err.print(f"... and {len(failed) - MAX_LISTED_FAILURES} more (see {out_csv})")


def warn_narrow_band(pairs) -> None:
    """Say when references are sampled below 16 kHz: wide-band PESQ then scores audio that
    holds nothing above their Nyquist frequency, not comparable with wide-band scores."""
    import warnings

    import soundfile as sf

    from dfablate.metrics import METRIC_RATE

    for _, clean, _ in pairs:
        try:
            rate = sf.info(str(clean)).samplerate if clean is not None else METRIC_RATE
        except Exception:  # unreadable: its row says why
            continue
        if rate < METRIC_RATE:
            warnings.warn(
                f"{clean}: {rate} Hz audio scored with wide-band PESQ (16 kHz): upsampled, it "
                f"has no content above {rate // 2} Hz; compare such scores only with each other",
                stacklevel=2,
            )
            return


def run(args: argparse.Namespace) -> int:
    from dfablate.metrics import METRICS, parse_metrics
    from dfablate.scoring import find_clean_enhanced_pairs, score_pairs_to_csv

    try:
        metrics = parse_metrics(args.metrics) if args.metrics is not None else METRICS
    except UserError as exc:
        raise UserError(f"--metrics {args.metrics}: {exc}") from None
    pairs = find_clean_enhanced_pairs(args.clean, args.enhanced)
    warn_narrow_band(pairs)
    try:
        frame = score_pairs_to_csv(
            pairs, args.out, jobs=args.jobs, progress=True, metrics=metrics, force=args.force
        )
    except KeyboardInterrupt:
        raise Interrupted(f"finished rows are kept in {args.out}; rerun to resume") from None
    print_summary(frame, args.out)
    if (frame["error"] == "").sum() == 0:
        print("error: no file could be scored", file=sys.stderr)
        return 1
    return 0
