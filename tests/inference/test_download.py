"""`inference.download` and `python -m inference download` against a real local HTTP server.

The server (ThreadingHTTPServer on 127.0.0.1, port 0) serves routes that can honour or ignore
Range, drop the connection after N bytes, stall, lie about Content-Length, redirect, or answer with
an error status or an HTML page; it logs every request's Range header and counts body bytes sent.
"""
from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from http_server import HTML, PAYLOAD, PAYLOAD_SHA, Route, serve
from inference import download as dl
from inference.cli import main
from inference.errors import CancelledError, InvalidRequestError, ModelFormatError

ROOT = Path(__file__).resolve().parents[2]
@pytest.fixture
def server(monkeypatch):
    monkeypatch.setattr(dl, "RETRY_DELAY_S", 0.0)
    with serve(monkeypatch) as httpd:
        yield httpd


@pytest.fixture
def lib(tmp_path) -> Path:
    folder = tmp_path / "library"
    folder.mkdir()
    return folder


def _one_line(text: str) -> bool:
    return "\n" not in str(text).strip()


def test_plain_download_returns_the_file_and_its_hash(server, lib):
    server.routes["/models/tiny.safetensors"] = Route()
    result = dl.download_file(f"{server.base}/models/tiny.safetensors", lib, sha256=PAYLOAD_SHA.upper())
    assert result.path == lib / "tiny.safetensors" and result.path.read_bytes() == PAYLOAD
    assert (result.sha256, result.size, result.resumed_from) == (PAYLOAD_SHA, len(PAYLOAD), 0)
    assert sorted(p.name for p in lib.iterdir()) == ["tiny.safetensors"]  # no .part left behind
    assert [entry["range"] for entry in server.log] == [None]
    # Without a hash the digest is computed all the same; download() returns the path.
    server.routes["/b.safetensors"] = Route()
    assert dl.download(f"{server.base}/b.safetensors", lib) == lib / "b.safetensors"


def test_resume_after_a_dropped_connection_asks_for_the_rest_only(server, lib):
    server.routes["/m.safetensors"] = Route(drop_after=100_000)
    result = dl.download_file(f"{server.base}/m.safetensors", lib, sha256=PAYLOAD_SHA)
    assert result.path.read_bytes() == PAYLOAD
    assert [entry["range"] for entry in server.log] == [None, "bytes=100000-"]
    assert server.sent < 2 * len(PAYLOAD)


def test_wrong_hash_removes_everything_and_names_both_hashes(server, lib):
    server.routes["/m.safetensors"] = Route()
    wrong = "ab" * 32
    with pytest.raises(dl.DownloadError) as info:
        dl.download(f"{server.base}/m.safetensors", lib, sha256=wrong)
    message = str(info.value)
    assert wrong in message and PAYLOAD_SHA in message and "m.safetensors" in message and _one_line(message)
    assert list(lib.iterdir()) == []


def test_cancel_keeps_the_part_and_a_second_call_resumes(server, lib):
    server.routes["/m.safetensors"] = Route()
    url = f"{server.base}/m.safetensors"
    seen: list[int] = []
    with pytest.raises(CancelledError) as info:
        dl.download(url, lib, progress=lambda done, total: seen.append(done),
                    should_stop=lambda: bool(seen) and seen[-1] >= 100_000)
    part = lib / ".m.safetensors.part"
    assert "resume" in str(info.value) and str(part) in str(info.value) and _one_line(info.value)
    assert 100_000 <= part.stat().st_size < len(PAYLOAD) and not (lib / "m.safetensors").exists()
    kept = part.stat().st_size
    result = dl.download_file(url, lib, sha256=PAYLOAD_SHA)
    assert result.path.read_bytes() == PAYLOAD and result.resumed_from == kept and not part.exists()
    assert server.log[-1]["range"] == f"bytes={kept}-"


def test_progress_is_monotonic_with_the_right_total(server, lib):
    server.routes["/m.safetensors"] = Route(drop_after=70_000)
    calls: list[tuple[int, int | None]] = []
    dl.download(f"{server.base}/m.safetensors", lib, progress=lambda done, total: calls.append((done, total)))
    assert len(calls) > 3 and {total for _, total in calls} == {len(PAYLOAD)}
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(calls)) and calls[-1][0] == len(PAYLOAD)


def test_a_server_that_ignores_range_still_gives_the_right_file(server, lib):
    server.routes["/m.safetensors"] = Route(ranges=False, drop_after=100_000)
    result = dl.download_file(f"{server.base}/m.safetensors", lib, sha256=PAYLOAD_SHA)
    assert result.path.read_bytes() == PAYLOAD
    assert [entry["range"] for entry in server.log] == [None, "bytes=100000-"]  # asked, got 200, restarted


def test_a_complete_part_from_an_earlier_call_is_finished_on_416(server, lib):
    server.routes["/m.safetensors"] = Route()
    (lib / ".m.safetensors.part").write_bytes(PAYLOAD)
    result = dl.download_file(f"{server.base}/m.safetensors", lib, filename="m.safetensors")
    assert result.path.read_bytes() == PAYLOAD and result.resumed_from == len(PAYLOAD)
    assert [entry["range"] for entry in server.log] == [f"bytes={len(PAYLOAD)}-"]


@pytest.mark.skipif(sys.platform == "win32", reason="the part is locked with flock on POSIX only")
def test_a_part_another_download_is_writing_is_left_alone(server, lib):
    import fcntl

    server.routes["/m.safetensors"] = Route()
    part = lib / ".m.safetensors.part"
    part.write_bytes(PAYLOAD[:1000])
    with open(part, "ab") as other:
        fcntl.flock(other.fileno(), fcntl.LOCK_EX)
        with pytest.raises(dl.DownloadError, match="another download is writing"):
            dl.download(f"{server.base}/m.safetensors", lib, filename="m.safetensors")
    assert part.read_bytes() == PAYLOAD[:1000] and not (lib / "m.safetensors").exists()
    assert dl.download(f"{server.base}/m.safetensors", lib).read_bytes() == PAYLOAD  # free again: resumes


def test_content_length_lies(server, lib):
    server.routes["/long.safetensors"] = Route(claim_length=len(PAYLOAD) + 5000)  # then hangs up early
    assert dl.download(f"{server.base}/long.safetensors", lib).read_bytes() == PAYLOAD
    server.routes["/short.safetensors"] = Route(claim_length=len(PAYLOAD) - 5000)  # truncated file
    with pytest.raises(ModelFormatError, match="not a model file"):
        dl.download(f"{server.base}/short.safetensors", lib)
    assert sorted(p.name for p in lib.iterdir()) == ["long.safetensors"]


def test_dropping_every_time_gives_up_after_the_retries_and_keeps_the_part(server, lib):
    server.routes["/m.safetensors"] = Route(claim_length=len(PAYLOAD) + 10, ranges=False)
    with pytest.raises(dl.DownloadError, match="2 retries failed.*resume") as info:
        dl.download(f"{server.base}/m.safetensors", lib, retries=2)
    assert _one_line(info.value) and len(server.log) == 3
    assert not (lib / "m.safetensors").exists()


def test_non_model_content_is_removed_with_a_clear_message(server, lib):
    server.routes["/m.safetensors"] = Route(body=HTML, headers={"Content-Type": "text/html"})
    with pytest.raises(ModelFormatError) as info:
        dl.download(f"{server.base}/m.safetensors", lib)
    assert "HTML page" in str(info.value) and "m.safetensors" in str(info.value) and _one_line(info.value)
    server.routes["/m.ckpt"] = Route(body=b"just some notes\nnot a checkpoint\n")
    with pytest.raises(ModelFormatError, match="text file"):
        dl.download(f"{server.base}/m.ckpt", lib)
    server.routes["/m.gguf"] = Route(body=b"\x00\x01" * 100)
    with pytest.raises(ModelFormatError, match="GGUF"):
        dl.download(f"{server.base}/m.gguf", lib)
    assert list(lib.iterdir()) == []
    # A real pickle/zip checkpoint and a GGUF file pass (they are recognised, not opened).
    server.routes["/ok.ckpt"] = Route(body=b"PK\x03\x04" + bytes(200))
    server.routes["/ok.gguf"] = Route(body=b"GGUF" + bytes(200))
    dl.download(f"{server.base}/ok.ckpt", lib)
    dl.download(f"{server.base}/ok.gguf", lib)
    assert sorted(p.name for p in lib.iterdir()) == ["ok.ckpt", "ok.gguf"]


@pytest.mark.parametrize("name", ["../../x.safetensors", "a/b.safetensors", "a\\b.safetensors", ".hidden.safetensors",
                                  "..", "", "model.exe", "model.txt", "notes", "con.safetensors", "a:b.safetensors",
                                  ".safetensors"])
def test_hostile_or_unusable_names_given_by_the_caller_are_refused(server, lib, name):
    server.routes["/m.safetensors"] = Route()
    with pytest.raises(InvalidRequestError) as info:
        dl.download(f"{server.base}/m.safetensors", lib, filename=name)
    assert _one_line(info.value) and server.log == [] and list(lib.iterdir()) == []


@pytest.mark.parametrize("disposition", ['attachment; filename="../../evil.safetensors"',
                                         "attachment; filename*=UTF-8''..%2F..%2Fevil.safetensors",
                                         'attachment; filename="C:\\\\temp\\\\evil.safetensors"'])
def test_server_names_with_folders_keep_only_the_file_name(server, lib, disposition):
    server.routes["/dl/123"] = Route(headers={"Content-Disposition": disposition})
    assert dl.download(f"{server.base}/dl/123", lib) == lib / "evil.safetensors"
    assert sorted(p.name for p in lib.parent.rglob("*") if p.is_file()) == ["evil.safetensors"]


def test_server_and_url_names_that_cannot_be_used_are_refused(server, lib):
    server.routes["/dl/1"] = Route(headers={"Content-Disposition": 'attachment; filename=".bashrc"'})
    server.routes["/dl/2"] = Route(headers={"Content-Disposition": 'attachment; filename="run.sh"'})
    server.routes["/dl/3"] = Route()
    for path, words in (("/dl/1", "dot"), ("/dl/2", "not a model file name"), ("/dl/3", "--name")):
        with pytest.raises(InvalidRequestError, match=words):
            dl.download(f"{server.base}{path}", lib)
    # Encoded slashes in the URL path cannot climb out of the folder either.
    server.routes["/dl/..%2F..%2Fx.safetensors"] = Route()
    assert dl.download(f"{server.base}/dl/..%2F..%2Fx.safetensors", lib) == lib / "x.safetensors"
    assert sorted(p.name for p in lib.iterdir()) == ["x.safetensors"]


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/m.safetensors", "javascript:alert(1)",
                                 "http://", "/tmp/m.safetensors", "http://host/a b.safetensors"])
def test_bad_schemes_are_refused(lib, url):
    with pytest.raises(InvalidRequestError) as info:
        dl.download(url, lib)
    assert _one_line(info.value)


def test_redirects_are_followed_only_to_http(server, lib):
    server.routes["/go"] = Route(location="/real/m.safetensors")
    server.routes["/real/m.safetensors"] = Route()
    assert dl.download(f"{server.base}/go", lib) == lib / "m.safetensors"  # named from the final URL
    for target in ("file:///etc/passwd", "ftp://127.0.0.1/m.safetensors"):
        server.routes["/evil"] = Route(location=target)
        with pytest.raises(InvalidRequestError, match="only http and https"):
            dl.download(f"{server.base}/evil", lib, filename="e.safetensors")
    assert sorted(p.name for p in lib.iterdir()) == ["m.safetensors"]


@pytest.mark.parametrize("digest", ["abc", "g" * 64, "0" * 63, "0" * 65, ""])
def test_malformed_sha256_is_refused_before_any_request(server, lib, digest):
    server.routes["/m.safetensors"] = Route()
    with pytest.raises(InvalidRequestError, match="64 hexadecimal"):
        dl.download(f"{server.base}/m.safetensors", lib, sha256=digest)
    assert server.log == []


def test_an_existing_file_is_never_overwritten(server, lib):
    server.routes["/m.safetensors"] = Route()
    (lib / "m.safetensors").write_bytes(b"old")
    with pytest.raises(InvalidRequestError, match="already exists") as info:
        dl.download(f"{server.base}/m.safetensors", lib)
    assert str(lib / "m.safetensors") in str(info.value)
    with pytest.raises(InvalidRequestError, match="already exists"):
        dl.download(f"{server.base}/m.safetensors", lib, filename="m.safetensors")
    assert (lib / "m.safetensors").read_bytes() == b"old" and sorted(p.name for p in lib.iterdir()) == ["m.safetensors"]


def test_http_errors_name_the_url_and_server_errors_are_retried(server, lib):
    with pytest.raises(dl.DownloadError, match="404") as info:
        dl.download(f"{server.base}/missing.safetensors?token=SECRET", lib)
    assert "/missing.safetensors" in str(info.value) and len(server.log) == 1
    assert "SECRET" not in str(info.value) and _one_line(info.value)  # tokens in the query stay out of messages
    server.routes["/boom.safetensors"] = Route(status=500)
    with pytest.raises(dl.DownloadError, match="HTTP 500"):
        dl.download(f"{server.base}/boom.safetensors", lib, retries=2)
    assert len(server.log) == 1 + 3 and list(lib.iterdir()) == []


def test_cli_download_and_its_errors(server, lib, capsys):
    server.routes["/m.safetensors"] = Route()
    url = f"{server.base}/m.safetensors"
    assert main(["download", url, "--to", str(lib), "--name", "tiny.safetensors", "--sha256", PAYLOAD_SHA]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == {"written": str(lib / "tiny.safetensors"), "sha256": PAYLOAD_SHA, "bytes": len(PAYLOAD),
                      "resumed_from": 0}
    for argv, words in ((["download", url, "--to", str(lib), "--sha256", "xyz"], "64 hexadecimal"),
                        (["download", url, "--to", str(lib), "--sha256", "0" * 64], PAYLOAD_SHA),
                        (["download", url], "--to"),
                        (["download", "file:///etc/passwd", "--to", str(lib)], "only http"),
                        (["download", url, "--to", str(lib / "nope")], "no such folder")):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: ") and words in err[-1] and "Traceback" not in "\n".join(err)
    assert sorted(p.name for p in lib.iterdir()) == ["tiny.safetensors"]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX")
def test_cli_ctrl_c_keeps_the_part_and_a_rerun_resumes(server, lib):
    stall = threading.Event()
    server.routes["/m.safetensors"] = Route(drop_after=100_000, stall=stall)
    url = f"{server.base}/m.safetensors"
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()} | {"no_proxy": "127.0.0.1"}
    child = subprocess.Popen([sys.executable, "-m", "inference", "download", url, "--to", str(lib)], cwd=ROOT,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    part = lib / ".m.safetensors.part"
    deadline = time.monotonic() + 20
    while not (part.exists() and part.stat().st_size >= 100_000) and time.monotonic() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGINT)  # while the server stalls mid-body
    _, err = child.communicate(timeout=20)
    stall.set()
    assert child.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted: ") and "resume" in last and str(part) in last
    assert part.stat().st_size == 100_000 and not (lib / "m.safetensors").exists()
    assert main(["download", url, "--to", str(lib), "--sha256", PAYLOAD_SHA]) == 0
    assert (lib / "m.safetensors").read_bytes() == PAYLOAD and server.log[-1]["range"] == "bytes=100000-"
