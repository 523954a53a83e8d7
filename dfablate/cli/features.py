"""`dfablate features AUDIO... --norm NAME [--csv OUT]`: per-bin std of the deep-filter features."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "features",
        help="per-bin std of the normalised deep-filter features (does a norm give unit variance?)",
        description=(
            "Compute DeepFilterNet's complex deep-filter features for the given audio with the "
            "chosen normalisation and print the per-bin standard deviation over time of their "
            "real and imaginary parts (Bessel-corrected, over all frames of all files)."
        ),
    )
    parser.add_argument(
        "audio", nargs="+", help="audio files (resampled to 48 kHz, stereo down-mixed)"
    )
    parser.add_argument("--norm", default="original", help="normalisation name (default: original)")
    parser.add_argument(
        "--csv", metavar="OUT", help="also write the table as CSV (bin,std_real,std_imag)"
    )
    parser.set_defaults(handler=run)


CSV_COLUMNS = ("bin", "std_real", "std_imag")


def check_features_csv(path) -> None:
    """Refuse to replace an existing file that is not a table this command wrote."""
    from dfablate.errors import UserError

    if not path.exists():
        return
    try:
        with path.open(newline="") as handle:
            header = handle.readline().strip()
    except (OSError, UnicodeDecodeError):
        header = ""
    if tuple(header.split(",")) != CSV_COLUMNS:
        raise UserError(
            f"--csv {path}: exists but is not a features CSV ({','.join(CSV_COLUMNS)}); "
            "remove it or choose another file"
        )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from dfablate.audio import load_audio, truncation
    from dfablate.errors import UserError
    from dfablate.features import DEFAULT_SAMPLE_RATE, feature_std, get_norm
    from dfablate.paths import check_output_file

    get_norm(args.norm)  # fail on an unknown name before reading any audio
    if args.csv:
        check_output_file(Path(args.csv), "--csv")
        check_features_csv(Path(args.csv))
    for path in map(Path, args.audio):  # statistics of part of a file would pass for the whole
        if path.is_dir():
            raise UserError(f"{path}: is a directory; give audio files")
        if not path.exists():
            raise UserError(f"{path}: no such file")
        if reason := truncation(path):
            raise UserError(f"{path}: {reason}")
    waves = [load_audio(path, DEFAULT_SAMPLE_RATE) for path in args.audio]
    table_df = feature_std(waves, norm=args.norm)
    table = Table(title=f"feat_spec std per deep-filter bin, norm={args.norm}")
    for column in CSV_COLUMNS:
        table.add_column(column, justify="right")
    for row in table_df.itertuples(index=False):
        table.add_row(str(row.bin), f"{row.std_real:.4f}", f"{row.std_imag:.4f}")
    console = Console()
    console.print(table)
    console.print(
        f"mean std: real {table_df.std_real.mean():.4f}, imag {table_df.std_imag.mean():.4f} "
        f"({len(waves)} file(s))"
    )
    if args.csv:
        out = Path(args.csv)
        out.parent.mkdir(parents=True, exist_ok=True)
        table_df.to_csv(out, index=False)
        console.print(f"wrote {out}")
    return 0
