"""`dfablate data download-valentini | verify | make-mini`: get, check and build datasets."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data",
        help="download Valentini, verify a dataset, build the mini corpus",
        description="Get, check and build paired clean/noisy datasets in the Valentini layout.",
    )
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    download = actions.add_parser(
        "download-valentini",
        help="download, verify and extract Valentini (VoiceBank-DEMAND, 48 kHz)",
        description="Download the Valentini zips (resuming partial downloads), check every "
        "member's CRC, extract them into the standard layout and check the pair counts "
        "(11,572 train, 824 test). Safe to re-run: verified parts are skipped.",
    )
    download.add_argument("--root", type=Path, required=True, help="dataset folder to fill")
    download.add_argument(
        "--base-url",
        default=None,
        help="folder URL the zip names are appended to, for mirrors "
        "(default: https://datashare.ed.ac.uk/bitstream/handle/10283/2791/)",
    )
    download.add_argument(
        "--subset", choices=("test", "train", "all"), default="all", help="default: all"
    )
    download.add_argument(
        "--keep-zips", action="store_true", help="keep the zips in ROOT/downloads after extraction"
    )
    download.set_defaults(handler=run_download)

    verify = actions.add_parser(
        "verify",
        help="check a dataset folder (layout, pairing, rates, channels, lengths)",
        description="Read every file of a Valentini-layout dataset and report problems.",
    )
    verify.add_argument("--root", type=Path, required=True, help="dataset folder")
    verify.add_argument(
        "--split",
        choices=("train", "test", "all"),
        default=None,
        help="default: every split whose folders exist",
    )
    verify.add_argument(
        "--sample-rate", type=int, default=48000, help="the model's rate (default: 48000)"
    )
    verify.add_argument(
        "--jobs", type=int, default=4, help="files read in parallel (default: 4; 0: all cores)"
    )
    verify.set_defaults(handler=run_verify)

    mini = actions.add_parser(
        "make-mini",
        help="build the mini corpus (real speech + real noise, Valentini layout, 48 kHz)",
        description="Build, in seconds and deterministically, a small Valentini-layout corpus "
        "from the speech and noise clips shipped with dfablate.",
    )
    mini.add_argument("--out", type=Path, required=True, help="folder to create")
    mini.add_argument("--seed", type=int, default=0, help="default: 0")
    mini.set_defaults(handler=run_make_mini)


def run_download(args: argparse.Namespace) -> int:
    from dfablate.data.download import download_valentini
    from dfablate.paths import check_output_dir

    check_output_dir(args.root, "--root")
    counts = download_valentini(args.root, args.base_url, args.subset, keep_zips=args.keep_zips)
    listed = ", ".join(f"{split} {count} pairs" for split, count in counts.items())
    print(f"{args.root}: Valentini ready and verified ({listed})")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from dfablate.data.valentini import verify_dataset

    splits = (
        None if args.split is None else (["train", "test"] if args.split == "all" else [args.split])
    )
    from dfablate.cores import check_core_count
    from dfablate.scoring import available_cores

    jobs = check_core_count(args.jobs, "--jobs") or available_cores()
    ok, lines = verify_dataset(args.root, splits, sample_rate=args.sample_rate, jobs=jobs)
    print("\n".join(lines))
    return 0 if ok else 1


def run_make_mini(args: argparse.Namespace) -> int:
    import json

    from dfablate.data.mini import MARKER, example_pair, make_mini
    from dfablate.errors import UserError
    from dfablate.paths import check_output_dir

    if args.seed < 0:
        raise UserError(f"--seed {args.seed}: must be a whole number, 0 or more")
    check_output_dir(args.out, "--out")
    root = make_mini(args.out, args.seed)
    pairs = json.loads((root / MARKER).read_text())["pairs"]
    clean, noisy = example_pair(root)
    print(
        f"{root}: mini corpus, seed {args.seed}: {pairs['train']} train pairs, {pairs['test']} test pairs\n"
        f"train on it with: dfablate train data=mini data.root={root} ...\n"
        f"a clean/noisy test pair to try score and features on:\n  clean: {clean}\n  noisy: {noisy}"
    )
    return 0
