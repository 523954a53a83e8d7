"""Getting Valentini from nothing to a verified dataset: resumable download, CRC-checked
extraction into a temporary folder that is renamed into place, pair counts, and a manifest
(`dfablate_manifest.json`) that records what has been verified.

A folder of the layout exists under the root only once every member of its zip passed its CRC
check; an interrupted download stays as `downloads/<zip>.part` and is resumed with an HTTP Range
request; a corrupt zip is deleted so the next run downloads it anew.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import zipfile
from collections.abc import Mapping
from http.client import HTTPException
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import urljoin, urlparse
from urllib.request import Request, urlopen

from rich.console import Console

from dfablate.data.valentini import OFFICIAL_PAIR_COUNTS, SPLIT_DIRS, find_clean_noisy_pairs
from dfablate.errors import UserError
from dfablate.progress import progress_bar

DEFAULT_BASE_URL = "https://datashare.ed.ac.uk/bitstream/handle/10283/2791/"
SUBSETS = {"test": ("test",), "train": ("train",), "all": ("train", "test")}
MANIFEST = "dfablate_manifest.json"
CHUNK = 1 << 20
TIMEOUT_S = 60


def _console() -> Console:
    return Console(stderr=True)


def read_manifest(root: Path) -> dict:
    """What earlier runs verified: {"folders": {name: {...}}, "splits": {split: {...}}}."""
    path = root / MANIFEST
    if not path.is_file():
        return {"folders": {}, "splits": {}}
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise UserError(f"{path}: unreadable manifest ({exc}); delete it and run again") from exc


def _write_manifest(root: Path, manifest: dict) -> None:
    tmp = root / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, root / MANIFEST)


def fetch(url: str, dest: Path, *, progress: bool = True) -> None:
    """Download `url` to `dest` through `dest.part`, resuming a partial `.part` with HTTP Range."""
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": "dfablate"} | ({"Range": f"bytes={have}-"} if have else {})
    try:
        response = urlopen(Request(url, headers=headers), timeout=TIMEOUT_S)
    except HTTPError as exc:
        if exc.code == 416 and have:  # nothing after `have`: the part is complete, or bogus
            total = re.search(r"/(\d+)", exc.headers.get("Content-Range", ""))
            if total and int(total.group(1)) == have:
                part.replace(dest)
                return
            part.unlink()
            return fetch(url, dest, progress=progress)
        raise UserError(f"{url}: download failed (HTTP {exc.code} {exc.reason})") from exc
    except (URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserError(f"{url}: cannot connect ({reason})") from exc
    with response:
        if response.status == 206:
            content_range = response.headers.get("Content-Range", "")
            match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", content_range)
            if not match or int(match.group(1)) != have:
                raise UserError(f"{url}: server answered a resume with bad range {content_range!r}")
            total = int(match.group(2)) if match.group(2) != "*" else None
        else:  # 200: the server ignored the Range header, start over
            have = 0
            length = response.headers.get("Content-Length")
            total = int(length) if length else None
        got = have
        try:
            with (
                open(part, "ab" if have else "wb") as out,
                progress_bar(progress, counts="bytes") as bar,
            ):
                task = bar.add_task(dest.name, total=total, completed=have)
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    got += len(chunk)
                    bar.update(task, completed=got)
        except (HTTPException, OSError) as exc:
            raise UserError(
                f"{url}: download interrupted after {got} bytes ({exc}); "
                "run the command again to resume"
            ) from exc
    if total is not None and got != total:
        raise UserError(
            f"{url}: download truncated ({got} of {total} bytes); run the command again to resume"
        )
    part.replace(dest)


def extract_verified(zip_path: Path, root: Path, folder: str, *, progress: bool = True) -> int:
    """Extract `folder/` of a zip into `root/folder`, checking every member's CRC on the way.

    Extracts into a hidden temporary folder and renames it into place only when every member was
    read in full with a matching CRC; a corrupt zip is deleted. Returns the number of .wav files.
    """
    tmp = root / f".{folder}.extracting"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with zipfile.ZipFile(zip_path) as archive:
            members = [
                info
                for info in archive.infolist()
                if not info.is_dir() and not info.filename.startswith("__MACOSX/")
            ]
            with progress_bar(progress) as bar:
                for info in bar.track(members, description=f"verifying {zip_path.name}"):
                    archive.extract(info, tmp)  # reads to the end: raises on a CRC mismatch
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile, ValueError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        zip_path.unlink(missing_ok=True)
        raise UserError(
            f"{zip_path}: corrupt or truncated zip ({exc}); deleted it, "
            "run the command again to download it anew"
        ) from exc
    source = tmp / folder if (tmp / folder).is_dir() else tmp
    wavs = sum(1 for path in source.glob("*.wav"))
    if wavs == 0:
        shutil.rmtree(tmp)
        raise UserError(f"{zip_path}: no .wav files in {folder}/ (is this the right zip?)")
    os.rename(source, root / folder)
    shutil.rmtree(tmp, ignore_errors=True)
    return wavs


def download_valentini(
    root: str | Path,
    base_url: str | None = None,
    subset: str = "all",
    *,
    expected_pairs: Mapping[str, int] = OFFICIAL_PAIR_COUNTS,
    keep_zips: bool = False,
    progress: bool = True,
) -> dict[str, int]:
    """Download, verify and extract Valentini splits into `root`; returns pairs per split.

    `base_url` is the folder the zip names are appended to (default: Edinburgh DataShare).
    Raises UserError when a split does not have `expected_pairs` pairs.
    """
    if subset not in SUBSETS:
        raise UserError(f"--subset {subset!r}: use one of {', '.join(SUBSETS)}")
    root = Path(root).expanduser()
    base_url = base_url or DEFAULT_BASE_URL
    parsed = urlparse(base_url)
    if parsed.scheme not in ("http", "https", "file") or not (parsed.netloc or parsed.path):
        raise UserError(f"--base-url {base_url!r}: not an http(s):// or file:// URL")
    if root.exists() and not root.is_dir():
        raise UserError(f"--root {root}: is a file, not a directory")
    base_url = base_url if base_url.endswith("/") else base_url + "/"
    downloads = root / "downloads"
    created = [folder for folder in (downloads, *downloads.parents) if not folder.exists()]
    downloads.mkdir(parents=True, exist_ok=True)
    try:
        return _download(root, downloads, base_url, subset, expected_pairs, keep_zips, progress)
    except BaseException:  # refused by the server, interrupted: leave no empty folder behind
        for folder in created:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise


def _download(
    root: Path,
    downloads: Path,
    base_url: str,
    subset: str,
    expected_pairs: Mapping[str, int],
    keep_zips: bool,
    progress: bool,
) -> dict[str, int]:
    manifest = read_manifest(root)
    say = _console().print if progress else (lambda *args, **kwargs: None)
    splits = SUBSETS[subset]
    for folder in (name for split in splits for name in SPLIT_DIRS[split]):
        if manifest["folders"].get(folder) and (root / folder).is_dir():
            say(f"{folder}: already verified")
            continue
        if (root / folder).exists():
            raise UserError(
                f"{root / folder}: exists but was not extracted and verified by dfablate; "
                "remove it and run again (or check it with `dfablate data verify`)"
            )
        zip_path = downloads / f"{folder}.zip"
        url = urljoin(base_url, zip_path.name)
        if not zip_path.is_file():
            fetch(url, zip_path, progress=progress)
        zip_bytes = zip_path.stat().st_size
        wavs = extract_verified(zip_path, root, folder, progress=progress)
        manifest["folders"][folder] = {"url": url, "zip_bytes": zip_bytes, "wav_files": wavs}
        _write_manifest(root, manifest)
        if not keep_zips:
            zip_path.unlink()
    counts = {}
    for split in splits:
        counts[split] = len(find_clean_noisy_pairs(root, split))
        expected = expected_pairs.get(split)
        complete = expected is None or counts[split] == expected
        manifest["splits"][split] = {"pairs": counts[split], "expected": expected, "ok": complete}
        _write_manifest(root, manifest)
        if not complete:
            raise UserError(
                f"{root}: the {split} split has {counts[split]} pairs, expected {expected}; "
                "the source is incomplete or not Valentini"
            )
    if not keep_zips and not any(downloads.iterdir()):
        downloads.rmdir()
    return counts
