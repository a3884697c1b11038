"""Hashed downloads against a loopback HTTP server: success, mirrors, hash mismatch, 404, unreachable, cut off."""

from __future__ import annotations

import functools
import http.server
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest_data import IDX_FILES, remote_source_for, sha256_file, write_mnist_like

from cortexnet.data import DataError, download_dataset, load_dataset
from cortexnet.data.download import main as download_main
from cortexnet.data.remote import REMOTE_FILES, RemoteFile, RemoteSource

MNIST_NAMES = [*IDX_FILES["train"], *IDX_FILES["t10k"]]
UNREACHABLE = "http://127.0.0.1:1/"  # port 1 on loopback: nothing listens, the connection is refused at once


class _Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/cut/"):
            # announce the whole file, send half of it, hang up: an interrupted download
            body = (Path(self.directory) / self.path[len("/cut/") :]).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture
def server(tmp_path):
    """Serve ``tmp_path / "www"`` on 127.0.0.1 (a free port); yields (base URL, served folder)."""
    www = tmp_path / "www"
    www.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", www
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture
def served_mnist(server, monkeypatch):
    """Fixture MNIST files on the server, and the file table pointing at them (hashes of the fixtures)."""
    base, www = server
    write_mnist_like(www / "mnist")
    table = remote_source_for(www / "mnist", MNIST_NAMES, mirrors=(base + "mnist/",))
    monkeypatch.setitem(REMOTE_FILES, "mnist", table)
    return base + "mnist/", www / "mnist"


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_success_then_load(served_mnist, tmp_path):
    _, served = served_mnist
    paths = download_dataset("mnist", tmp_path / "root")
    assert sorted(p.name for p in paths) == sorted(MNIST_NAMES)
    for p in paths:
        assert p.parent == tmp_path / "root" / "mnist" and sha256_file(p) == sha256_file(served / p.name)
    assert len(load_dataset("mnist", root=tmp_path / "root", val_fraction=0).train) == 30


def test_load_with_download_true_fetches_what_is_missing(served_mnist, tmp_path):
    s = load_dataset("mnist", root=tmp_path / "r", download=True, val_fraction=0)
    assert len(s.test) == 10 and _leftovers(tmp_path / "r" / "mnist") == sorted(MNIST_NAMES)


def test_mirrors_are_tried_in_order(served_mnist, server, tmp_path):
    base, _ = served_mnist
    paths = download_dataset("mnist", tmp_path, base_urls=[UNREACHABLE, server[0] + "nothing-here/", base])
    assert len(paths) == 4


def test_hash_mismatch_deletes_the_download(served_mnist, tmp_path, monkeypatch):
    base, _ = served_mnist
    wrong = RemoteSource((base,), (RemoteFile("train-labels-idx1-ubyte.gz", "ab" * 32),))
    monkeypatch.setitem(REMOTE_FILES, "mnist", wrong)
    with pytest.raises(DataError) as info:
        download_dataset("mnist", tmp_path)
    msg = str(info.value)
    assert "did not match the expected sha256 and was deleted" in msg
    assert str(tmp_path / "mnist" / "train-labels-idx1-ubyte.gz") in msg
    assert _leftovers(tmp_path / "mnist") == []  # neither the file nor pooch's temporary copy


def test_http_404_is_a_data_error(served_mnist, server, tmp_path):
    with pytest.raises(DataError, match="HTTP error 404") as info:
        download_dataset("mnist", tmp_path, base_urls=[server[0] + "missing/"])
    assert "failed from every mirror" in str(info.value)
    assert _leftovers(tmp_path / "mnist") == []


def test_unreachable_host_says_the_download_failed(served_mnist, tmp_path):
    with pytest.raises(DataError, match="cannot connect") as info:
        download_dataset("mnist", tmp_path, base_urls=[UNREACHABLE])
    assert "python -m cortexnet.data.download mnist" in str(info.value)
    assert _leftovers(tmp_path / "mnist") == []


def test_interrupted_download_leaves_nothing_that_passes(served_mnist, server, tmp_path):
    base, _ = server
    with pytest.raises(DataError):
        download_dataset("mnist", tmp_path, base_urls=[base + "cut/mnist/"])
    assert _leftovers(tmp_path / "mnist") == []
    with pytest.raises(DataError, match="not found"):
        load_dataset("mnist", root=tmp_path)


def test_a_bad_local_copy_is_replaced_on_download(served_mnist, tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"half a file")
    with pytest.raises(DataError, match="failed verification"):
        load_dataset("mnist", root=tmp_path)
    download_dataset("mnist", tmp_path)
    assert len(load_dataset("mnist", root=tmp_path, val_fraction=0).test) == 10


def test_verified_files_are_not_fetched_again(served_mnist, tmp_path, monkeypatch):
    download_dataset("mnist", tmp_path)
    import pooch

    def boom(*a, **k):
        raise AssertionError("downloaded again")

    monkeypatch.setattr(pooch, "retrieve", boom)
    assert len(download_dataset("mnist", tmp_path)) == 4
    assert len(load_dataset("mnist", root=tmp_path, download=True, val_fraction=0).train) == 30


def test_cli_success_and_failure(served_mnist, tmp_path, capsys):
    assert download_main(["mnist", "--root", str(tmp_path)]) == 0
    assert "4 file(s) verified" in capsys.readouterr().out
    shutil.rmtree(tmp_path / "mnist")
    assert download_main(["mnist", "--root", str(tmp_path), "--base-url", UNREACHABLE]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cortexnet.data.download: error: download of mnist file") and err.count("\n") == 1
    assert download_main(["digits"]) == 0


def test_cli_rejects_bad_arguments_in_one_line(capsys):
    for argv, msg in (
        (["no-such-dataset"], "invalid choice"),
        (["mnist", "--subjects", "1"], "sleep-edf only"),
    ):
        assert download_main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("cortexnet.data.download: error: ") and err.count("\n") == 1 and msg in err


def test_module_runs_as_a_command_without_heavy_imports(tmp_path):
    code = (
        "import sys, cortexnet.data, cortexnet.data.download as d; "
        "heavy = [m for m in ('torch', 'mne', 'pooch', 'sklearn') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, env={"PYTHONPATH": str(root)})
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cortexnet.data.download",
            "mnist",
            "--root",
            str(tmp_path),
            "--base-url",
            UNREACHABLE,
        ],
        cwd=root,
        env={"PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "error: download of mnist file" in done.stderr


def test_network_guard_blocks_non_loopback_and_allows_loopback(network_guard, server):
    import socket
    import urllib.request

    from conftest import NetworkAccessError

    for attempt in (
        lambda: socket.create_connection(("192.0.2.1", 80), timeout=1),  # TEST-NET-1, never routable
        lambda: socket.socket().connect(("198.51.100.7", 443)),
        lambda: socket.getaddrinfo("example.org", 443),
    ):
        with pytest.raises(NetworkAccessError, match="network access attempted"):
            attempt()
    assert len(network_guard) == 3
    network_guard.clear()  # the attempts above were this test's own; any other would fail it at teardown
    base, www = server
    (www / "ok.txt").write_text("fine")
    with urllib.request.urlopen(base + "ok.txt", timeout=5) as reply:  # 127.0.0.1 stays allowed
        assert reply.read() == b"fine"
    with pytest.raises(OSError):  # a refused loopback port is an ordinary OSError, as before
        socket.create_connection(("127.0.0.1", 1), timeout=1)
    socket.getaddrinfo("localhost", 80)
