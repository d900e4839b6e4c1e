"""Fashion-MNIST download: checksums, atomic files, and errors, against a local HTTP server.

The server (127.0.0.1, an ephemeral port) serves Debian's copies of the real files, so the
downloads are checked against the recorded checksums end to end; nothing reaches the internet.
"""

from __future__ import annotations

import gzip
import http.server
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from experiments import input_pipeline
from mlf_jax.data import fashion_mnist

DEBIAN = Path(fashion_mnist.DEFAULT_DIR)
LABELS = "t10k-labels-idx1-ubyte.gz"

pytestmark = pytest.mark.skipif(
    not all((DEBIAN / name).is_file() for name in fashion_mnist.ALL_FILES),
    reason=f"needs Debian's dataset-fashion-mnist in {DEBIAN} to serve real files",
)


class Server(http.server.ThreadingHTTPServer):
    """Serves ``files`` (name -> bytes) at ``/<name>``; ``truncate`` names files whose body
    stops half way (after a Content-Length of the whole); ``requests`` lists paths asked for."""

    daemon_threads = True

    def __init__(self, files: dict[str, bytes]):
        super().__init__(("127.0.0.1", 0), Handler)
        self.files = dict(files)
        self.truncate: set[str] = set()
        self.requests: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (the name http.server calls)
        name = self.path.lstrip("/")
        self.server.requests.append(name)
        body = self.server.files.get(name)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if name in self.server.truncate:
            body = body[: len(body) // 2]
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def debian_files() -> dict[str, bytes]:
    return {name: (DEBIAN / name).read_bytes() for name in fashion_mnist.ALL_FILES}


@pytest.fixture
def server(debian_files):
    srv = Server(debian_files)
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(autouse=True)
def no_internet(monkeypatch):
    """A download that forgets its base URL would try the canonical one: point it nowhere."""
    monkeypatch.setattr(fashion_mnist, "MIRRORS", ("http://127.0.0.1:9/",))
    monkeypatch.delenv(fashion_mnist.URL_ENV, raising=False)


def test_download_checks_the_real_files_and_load_reads_them(server, tmp_path):
    cache = fashion_mnist.download(tmp_path / "cache", server.url, progress=True)
    assert cache == tmp_path / "cache"
    assert sorted(p.name for p in cache.iterdir()) == sorted(fashion_mnist.ALL_FILES)
    assert sorted(server.requests) == sorted(fashion_mnist.ALL_FILES)
    for name in fashion_mnist.ALL_FILES:
        assert fashion_mnist.is_valid(cache / name)
    test = fashion_mnist.load(cache, "test")
    assert len(test) == 10_000
    np.testing.assert_array_equal(np.bincount(test.arrays["label"]), [1000] * 10)
    assert len(fashion_mnist.load(cache, "train")) == 60_000

    # A second call finds every file valid and asks the server for nothing.
    server.requests.clear()
    fashion_mnist.download(cache, server.url, progress=False)
    assert server.requests == []


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


@pytest.mark.parametrize("where", ["gzip stream", "decompressed content"])
def test_a_corrupt_file_is_rejected_naming_file_url_and_checksums(
    server, debian_files, tmp_path, where
):
    good = debian_files[LABELS]
    if where == "gzip stream":
        server.files[LABELS] = _flip(good, len(good) // 2)
    else:  # a valid gzip file of IDX bytes with one label changed
        server.files[LABELS] = gzip.compress(_flip(gzip.decompress(good), 100))
    with pytest.raises(fashion_mnist.ChecksumError) as e:
        fashion_mnist.download(tmp_path, server.url, progress=False, files=[LABELS])
    msg = str(e.value)
    assert isinstance(e.value, fashion_mnist.DataFileError)
    assert e.value.path == str(tmp_path / LABELS) and msg.startswith(str(tmp_path / LABELS))
    assert server.url + LABELS in msg and e.value.url == server.url + LABELS
    assert fashion_mnist.GZ_MD5[LABELS] in msg
    if where == "decompressed content":
        assert fashion_mnist.IDX_SHA256[LABELS] in msg
    assert list(tmp_path.iterdir()) == []  # neither the file nor its .part


def test_an_interrupted_download_names_the_url_and_leaves_no_file(server, tmp_path):
    server.truncate.add(LABELS)
    with pytest.raises(fashion_mnist.DownloadError) as e:
        fashion_mnist.download(tmp_path, server.url, progress=False, files=[LABELS])
    assert e.value.url == server.url + LABELS and str(e.value).startswith(server.url + LABELS)
    assert "closed" in str(e.value)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(fashion_mnist.DatasetNotFoundError):
        fashion_mnist.load(tmp_path, "test")


def test_a_missing_url_names_it(server, tmp_path):
    del server.files[LABELS]
    with pytest.raises(fashion_mnist.DownloadError, match=r"/t10k-labels-idx1-ubyte.gz: .*404"):
        fashion_mnist.download(tmp_path, server.url, progress=False, files=[LABELS])
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_server_names_the_url(tmp_path):
    with pytest.raises(fashion_mnist.DownloadError, match=r"http://127\.0\.0\.1:9/t10k-labels"):
        fashion_mnist.download(tmp_path, progress=False, timeout=5, files=[LABELS])


def test_an_invalid_file_in_the_cache_is_replaced_and_the_env_var_picks_the_server(
    server, tmp_path, monkeypatch
):
    (tmp_path / LABELS).write_bytes(b"not the labels")
    monkeypatch.setenv(fashion_mnist.URL_ENV, server.url)
    fashion_mnist.download(tmp_path, progress=False, files=[LABELS])
    assert server.requests == [LABELS]
    assert fashion_mnist.is_valid(tmp_path / LABELS)


def test_default_cache_dir_honours_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("MLF_JAX_DATA", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert fashion_mnist.default_cache_dir() == (
        tmp_path / "home" / ".cache" / "mlf_jax" / "fashion-mnist"
    )
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert fashion_mnist.default_cache_dir() == tmp_path / "xdg" / "mlf_jax" / "fashion-mnist"
    monkeypatch.setenv("MLF_JAX_DATA", str(tmp_path / "data"))
    assert fashion_mnist.default_cache_dir() == tmp_path / "data"


def test_missing_files_message_mentions_the_download(tmp_path):
    with pytest.raises(fashion_mnist.DatasetNotFoundError, match=r"fashion_mnist\.download\("):
        fashion_mnist.find_files(tmp_path, "train")


def _no_apt(monkeypatch, tmp_path) -> Path:
    """Debian's default directory made empty, no apt-get, and the user cache in tmp_path."""
    monkeypatch.setattr(fashion_mnist, "DEFAULT_DIR", str(tmp_path / "debian"))
    monkeypatch.setattr(input_pipeline.shutil, "which", lambda cmd: None)
    monkeypatch.setenv("MLF_JAX_DATA", str(tmp_path / "cache"))
    return tmp_path / "debian"


def test_experiments_download_into_the_user_cache_without_apt(server, tmp_path, monkeypatch):
    default = _no_apt(monkeypatch, tmp_path)
    monkeypatch.setenv(fashion_mnist.URL_ENV, server.url)
    got = input_pipeline.ensure_fashion_mnist(str(default), install=True)
    assert got == str(tmp_path / "cache")
    assert sorted(server.requests) == sorted(fashion_mnist.ALL_FILES)
    assert not default.exists()


def test_experiments_do_not_download_without_install_data_or_for_a_set_data_dir(
    server, tmp_path, monkeypatch
):
    default = _no_apt(monkeypatch, tmp_path)
    monkeypatch.setenv(fashion_mnist.URL_ENV, server.url)
    with pytest.raises(fashion_mnist.DatasetNotFoundError, match=str(default)):
        input_pipeline.ensure_fashion_mnist(str(default), install=False)
    with pytest.raises(fashion_mnist.DatasetNotFoundError, match=str(tmp_path / "mine")):
        input_pipeline.ensure_fashion_mnist(str(tmp_path / "mine"), install=True)
    assert server.requests == [] and not (tmp_path / "cache").exists()


def test_the_canonical_urls_are_the_readme_links():
    for name in fashion_mnist.ALL_FILES:
        assert fashion_mnist.URLS[name] == (
            f"http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/{name}"
        )
    assert os.path.basename(fashion_mnist.URLS[LABELS]) == LABELS
