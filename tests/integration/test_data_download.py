"""`dfablate data download-valentini` end to end against a real HTTP server on 127.0.0.1 that
serves Valentini-named zips (with HTTP Range support): good, resumed, truncated and corrupt."""

from __future__ import annotations

import io
import json
import re
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dfablate.cli import main
from dfablate.data.download import MANIFEST
from dfablate.data.valentini import OFFICIAL_PAIR_COUNTS, find_clean_noisy_pairs

TEST_PAIRS = OFFICIAL_PAIR_COUNTS["test"]  # the CLI checks the real count: serve exactly 824


def _wav_bytes(seed: int) -> bytes:
    buffer = io.BytesIO()
    samples = np.random.default_rng(seed).uniform(-0.5, 0.5, 64).astype(np.float32)
    sf.write(buffer, samples, 48000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _zip(folder: str, pairs: int, seed: int) -> bytes:
    """A zip holding `folder/p<spk>_<nnn>.wav`, like the DataShare zips (stored: no compression,
    so flipping a byte of a member's data leaves a readable zip with a bad CRC)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for index in range(pairs):
            name = f"{folder}/p{232 + 25 * (index % 2)}_{index // 2 + 1:03d}.wav"
            archive.writestr(name, _wav_bytes(seed + index))
    return buffer.getvalue()


class Server:
    """Serves `files` (path -> bytes) with Range support; records (path, Range header) per GET.
    `truncate[path] = n` sends only the first n bytes of that file while announcing all of it."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.truncate: dict[str, int] = {}
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                range_header = self.headers.get("Range")
                server.requests.append((self.path, range_header))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if range_header:
                    start = int(re.fullmatch(r"bytes=(\d+)-", range_header).group(1))
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                self.wfile.write(body[start : server.truncate.get(self.path, len(body))])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/valentini/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def test_zips() -> dict[str, bytes]:
    return {
        "clean_testset_wav": _zip("clean_testset_wav", TEST_PAIRS, seed=0),
        "noisy_testset_wav": _zip("noisy_testset_wav", TEST_PAIRS, seed=10_000),
    }


@pytest.fixture()
def server(test_zips):
    server = Server()
    server.files = {f"/valentini/{name}.zip": body for name, body in test_zips.items()}
    yield server
    server.close()


def _download(root: Path, server: Server, *extra: str) -> int:
    return main(
        ["data", "download-valentini", "--root", str(root), "--base-url", server.url]
        + ["--subset", "test", *extra]
    )


def _error_line(capsys) -> str:
    """The CLI's one error line (stderr also carries the progress bars)."""
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    return errors[0]


def _assert_complete(root: Path, test_zips: dict[str, bytes]) -> None:
    pairs = find_clean_noisy_pairs(root, "test")
    assert len(pairs) == TEST_PAIRS
    with zipfile.ZipFile(io.BytesIO(test_zips["noisy_testset_wav"])) as archive:
        member = archive.read(f"noisy_testset_wav/{pairs[-1].name}.wav")
    assert pairs[-1].noisy.read_bytes() == member
    manifest = json.loads((root / MANIFEST).read_text())
    assert manifest["splits"]["test"] == {"pairs": TEST_PAIRS, "expected": TEST_PAIRS, "ok": True}
    assert set(manifest["folders"]) == {"clean_testset_wav", "noisy_testset_wav"}
    assert not list(root.glob(".*extracting")) and not (root / "downloads").exists()


def test_download_verifies_extracts_and_is_idempotent(tmp_path, server, test_zips, capsys):
    root = tmp_path / "valentini"
    assert _download(root, server) == 0
    _assert_complete(root, test_zips)
    assert f"test {TEST_PAIRS} pairs" in capsys.readouterr().out
    assert [range_ for _, range_ in server.requests] == [None, None]

    server.requests.clear()
    assert _download(root, server) == 0  # everything verified already: nothing fetched
    assert server.requests == []


def test_download_resumes_a_partial_file_with_a_range_request(tmp_path, server, test_zips):
    root = tmp_path / "valentini"
    body = test_zips["clean_testset_wav"]
    (root / "downloads").mkdir(parents=True)
    (root / "downloads" / "clean_testset_wav.zip.part").write_bytes(body[: len(body) // 3])
    assert _download(root, server) == 0
    assert ("/valentini/clean_testset_wav.zip", f"bytes={len(body) // 3}-") in server.requests
    _assert_complete(root, test_zips)


def test_truncated_download_is_reported_then_resumed(tmp_path, server, test_zips, capsys):
    root = tmp_path / "valentini"
    path = "/valentini/noisy_testset_wav.zip"
    server.truncate[path] = 5000
    assert _download(root, server) == 2
    err = _error_line(capsys)
    assert "noisy_testset_wav.zip" in err and "5000" in err and "again to resume" in err
    assert not (root / "noisy_testset_wav").exists()
    manifest = json.loads((root / MANIFEST).read_text())
    assert "noisy_testset_wav" not in manifest["folders"] and "test" not in manifest["splits"]

    del server.truncate[path]
    assert _download(root, server) == 0
    assert (path, "bytes=5000-") in server.requests
    _assert_complete(root, test_zips)


def test_corrupt_zip_is_detected_deleted_and_nothing_extracted(tmp_path, server, test_zips, capsys):
    root = tmp_path / "valentini"
    body = bytearray(test_zips["clean_testset_wav"])
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        member = archive.infolist()[TEST_PAIRS // 2]
    body[member.header_offset + 30 + len(member.filename) + 100] ^= 0xFF  # in its samples
    server.files["/valentini/clean_testset_wav.zip"] = bytes(body)
    assert _download(root, server) == 2
    err = _error_line(capsys)
    assert "clean_testset_wav.zip: corrupt or truncated zip (Bad CRC-32" in err
    assert not (root / "clean_testset_wav").exists()
    assert not list(root.glob(".*extracting"))
    assert not (root / "downloads" / "clean_testset_wav.zip").exists()

    server.files["/valentini/clean_testset_wav.zip"] = test_zips["clean_testset_wav"]
    assert _download(root, server) == 0  # the next run downloads it anew
    _assert_complete(root, test_zips)


def test_wrong_pair_count_and_missing_file_are_reported(tmp_path, server, capsys):
    root = tmp_path / "valentini"
    server.files = {
        f"/valentini/{name}.zip": _zip(name, 10, seed=0)
        for name in ("clean_testset_wav", "noisy_testset_wav")
    }
    assert _download(root, server) == 2
    assert f"the test split has 10 pairs, expected {TEST_PAIRS}" in _error_line(capsys)
    assert json.loads((root / MANIFEST).read_text())["splits"]["test"]["ok"] is False

    assert main(["data", "download-valentini", "--root", str(tmp_path / "v2"),
                 "--base-url", server.url, "--subset", "train"]) == 2  # fmt: skip
    assert "clean_trainset_28spk_wav.zip: download failed (HTTP 404" in _error_line(capsys)
