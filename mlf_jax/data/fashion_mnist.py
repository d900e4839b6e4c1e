"""Fashion-MNIST from its IDX files (e.g. Debian's ``dataset-fashion-mnist``).

Where Debian's package is not available (macOS, Colab, no root), :func:`download` fetches the
four files from their canonical location into a user cache (:func:`default_cache_dir`) and
checks them against recorded checksums before they are used.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from mlf_jax.data import augment as _augment
from mlf_jax.data.errors import DataFileError, DatasetNotFoundError
from mlf_jax.data.idx import read_idx
from mlf_jax.data.source import ArraySource

__all__ = [
    "DEFAULT_DIR",
    "FILES",
    "ALL_FILES",
    "BASE_URL",
    "MIRRORS",
    "URLS",
    "URL_ENV",
    "GZ_MD5",
    "IDX_SHA256",
    "IDX_SIZE",
    "ChecksumError",
    "DownloadError",
    "default_cache_dir",
    "download",
    "is_valid",
    "MEAN",
    "STD",
    "CLASSES",
    "SIZE",
    "PADDING",
    "DataFileError",
    "augment",
    "check_images",
    "check_labels",
    "find_files",
    "load",
    "normalize",
]

#: Where Debian's ``dataset-fashion-mnist`` package puts the files.
DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"

#: IDX files per split: (images, labels). Each may also be uncompressed (no ``.gz``).
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

#: The four files, in download order (small label files first).
ALL_FILES = (
    "t10k-labels-idx1-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "train-images-idx3-ubyte.gz",
)

#: The canonical location of the files: the download links of the README of
#: github.com/zalandoresearch/fashion-mnist. Plain http (this S3 website endpoint has no
#: https); what is downloaded is trusted only once its checksum matches (:data:`IDX_SHA256`).
BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

#: Base URLs :func:`download` tries in order when it is given none and :data:`URL_ENV` is unset.
MIRRORS = (BASE_URL,)

#: The canonical URL of each file.
URLS = {name: BASE_URL + name for name in ALL_FILES}

#: Environment variable holding a base URL to download from instead of :data:`MIRRORS`
#: (a mirror, a local server, or ``file:///some/dir/``).
URL_ENV = "MLF_JAX_FASHION_MNIST_URL"

#: md5 of the canonical ``.gz`` files, as published in the zalandoresearch/fashion-mnist
#: README: a fast path of :func:`is_valid`. Other copies (Debian's are recompressed) have other
#: md5 sums but the same decompressed bytes, which :data:`IDX_SHA256` checks.
GZ_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}

#: sha256 of each DECOMPRESSED IDX file, the check of every download. Computed once from
#: Debian's ``dataset-fashion-mnist`` (``zcat /usr/share/datasets/fashion-mnist/<file> |
#: sha256sum``), whose IDX bytes are those of the canonical files; its sizes (``| wc -c``) are
#: those of :data:`IDX_SIZE` (16 or 8 header bytes, then 28 x 28 pixels or 1 label per example).
IDX_SHA256 = {
    "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",  # noqa: E501
    "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",  # noqa: E501
    "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}  # fmt: skip

#: Size in bytes of each decompressed IDX file.
IDX_SIZE = {
    "train-images-idx3-ubyte.gz": 16 + 60_000 * 28 * 28,
    "train-labels-idx1-ubyte.gz": 8 + 60_000,
    "t10k-images-idx3-ubyte.gz": 16 + 10_000 * 28 * 28,
    "t10k-labels-idx1-ubyte.gz": 8 + 10_000,
}

#: Height and width of every image.
SIZE = 28

#: Zero padding of the random crop in :func:`augment`.
PADDING = 2

#: Pixel mean and standard deviation of the training set (pixels in [0, 1]).
MEAN, STD = 0.2860, 0.3530

CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


class DownloadError(OSError):
    """A file could not be downloaded: a network or HTTP error, or a transfer cut short.

    The message is ``"<url>: <what went wrong>"``.

    Attributes:
      url: the URL that failed.
    """

    def __init__(self, url: str, what: str):
        self.url = url
        super().__init__(f"{url}: {what}")

    def __reduce__(self):
        return type(self), (self.url, str(self).removeprefix(f"{self.url}: "))


class ChecksumError(DataFileError):
    """A downloaded file whose content is not the expected one (a :class:`DataFileError`
    naming the file; the message also names the URL and the expected and actual checksums)."""

    def __init__(self, path: str | os.PathLike, what: str, url: str = ""):
        self.url = url
        super().__init__(path, what)

    def __reduce__(self):
        return type(self), (self.path, self.what, self.url)


def find_files(data_dir: str | os.PathLike, split: str) -> tuple[Path, Path]:
    """Paths of the (images, labels) IDX files of ``split`` in ``data_dir``.

    Accepts the ``.gz`` files or their uncompressed versions.

    Raises:
      ValueError: for an unknown split.
      DatasetNotFoundError: naming the directory, the expected files and how to get them.
    """
    if split not in FILES:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(FILES)}")
    found = []
    for name in FILES[split]:
        candidates = [Path(data_dir) / name, Path(data_dir) / name.removesuffix(".gz")]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            expected = ", ".join(n for pair in FILES.values() for n in pair)
            fetch = f"fashion_mnist.download({os.fspath(data_dir)!r})"
            raise DatasetNotFoundError(
                f"Fashion-MNIST file {name} not found in {os.fspath(data_dir)!r}. Expected the "
                f"IDX files {expected} (or the same without .gz) in that directory. On Debian "
                "or Ubuntu: `sudo apt-get install dataset-fashion-mnist` (installs them in "
                f"{DEFAULT_DIR}); or download and checksum them there with `python -c "
                f'"from mlf_jax.data import fashion_mnist; {fetch}"` (download() with no '
                f"directory: into the user cache {os.fspath(default_cache_dir())}, where the "
                "experiments download them automatically when data_dir is the default "
                f"{DEFAULT_DIR} and install_data is set)."
            )
        found.append(path)
    return found[0], found[1]


def load(data_dir: str | os.PathLike = DEFAULT_DIR, split: str = "train") -> ArraySource:
    """Fashion-MNIST ``split`` as uint8 images ``[N, 28, 28, 1]`` and int32 labels ``[N]``.

    Raises:
      ValueError: for an unknown split.
      DatasetNotFoundError: when a file is missing (see :func:`find_files`).
      DataFileError: (a ``ValueError``) naming the file when it is truncated or corrupt, or
        its IDX header does not describe ``[N, 28, 28]`` uint8 images or ``[N]`` uint8
        labels in ``0..9`` (one per image).
    """
    images_path, labels_path = find_files(data_dir, split)
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    check_images(images_path, images)
    check_labels(labels_path, labels, len(images), images_path)
    return ArraySource({"image": images[..., None], "label": labels.astype(np.int32)})


def check_images(path: str | os.PathLike, images: np.ndarray) -> None:
    """Raises :class:`DataFileError` naming ``path`` unless ``images`` is uint8
    ``[N, 28, 28]`` (the IDX header's type and dimensions)."""
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (SIZE, SIZE):
        raise DataFileError(
            path,
            f"IDX header says {images.dtype} images of shape {images.shape}; Fashion-MNIST "
            f"images are uint8 [N, {SIZE}, {SIZE}]",
        )


def check_labels(
    path: str | os.PathLike, labels: np.ndarray, n_images: int, images_path: str | os.PathLike
) -> None:
    """Raises :class:`DataFileError` naming ``path`` unless ``labels`` is uint8 ``[n_images]``
    with values in ``0..9``."""
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataFileError(
            path,
            f"IDX header says {labels.dtype} labels of shape {labels.shape}; Fashion-MNIST "
            "labels are uint8 [N]",
        )
    if len(labels) != n_images:
        raise DataFileError(
            path, f"holds {len(labels)} labels but {os.fspath(images_path)} holds {n_images} images"
        )
    if labels.size and labels.max() >= len(CLASSES):
        raise DataFileError(path, f"label {labels.max()} outside 0..{len(CLASSES) - 1}")


def normalize(images: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 ``(x / 255 - MEAN) / STD``."""
    return ((images.astype(np.float32) / 255.0) - MEAN) / STD


def augment(
    example: dict[str, np.ndarray],
    rng: np.random.Generator,
    padding: int = PADDING,
    erase: float = 0.0,
) -> dict[str, np.ndarray]:
    """Random crop (zero padding ``padding``) and horizontal flip of the uint8 image, then,
    with probability ``erase``, random erasing of a rectangle
    (:func:`mlf_jax.data.augment.random_erase`); every draw from ``rng``."""
    example = _augment.random_crop_flip(example, rng, padding)
    return _augment.random_erase(example, rng, erase) if erase else example


def default_cache_dir() -> Path:
    """Where :func:`download` puts the files by default: ``$MLF_JAX_DATA`` if set, else
    ``$XDG_CACHE_HOME/mlf_jax/fashion-mnist``, else ``~/.cache/mlf_jax/fashion-mnist``.

    A user cache rather than a system directory, so no root is needed.
    """
    if os.environ.get("MLF_JAX_DATA"):
        return Path(os.environ["MLF_JAX_DATA"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(cache).expanduser() / "mlf_jax" / "fashion-mnist"


def _gz_md5(path: Path) -> str:
    """md5 of the (compressed) file at ``path``."""
    md5 = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            md5.update(chunk)
    return md5.hexdigest()


def _idx_digest(path: Path, limit: int) -> tuple[str, int]:
    """(sha256, size) of the decompressed content of gzip file ``path``; stops reading after
    ``limit + 1`` bytes, so that a huge or endless stream is not decompressed in full.

    Raises:
      OSError, EOFError, zlib.error: when ``path`` is not a complete gzip file.
    """
    sha, size = hashlib.sha256(), 0
    with gzip.open(path, "rb") as f:
        while size <= limit and (chunk := f.read(1 << 20)):
            sha.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), size


def _check(path: Path, name: str) -> str | None:
    """None when ``path`` holds the expected content of file ``name``, else what is wrong."""
    md5 = _gz_md5(path)
    if md5 == GZ_MD5[name]:
        return None  # the canonical file
    try:
        sha, size = _idx_digest(path, IDX_SIZE[name])
    except (OSError, EOFError, zlib.error) as e:
        return (
            f"not a readable gzip file ({e}); its md5 is {md5}, the canonical file's {GZ_MD5[name]}"
        )
    if size != IDX_SIZE[name] or sha != IDX_SHA256[name]:
        return (
            f"decompressed content has sha256 {sha} ({size} bytes), expected sha256 "
            f"{IDX_SHA256[name]} ({IDX_SIZE[name]} bytes); its md5 is {md5}, the canonical "
            f"file's {GZ_MD5[name]}"
        )
    return None


def is_valid(path: str | os.PathLike, name: str | None = None) -> bool:
    """Whether ``path`` is the Fashion-MNIST file ``name`` (default: its file name, one of
    :data:`ALL_FILES`): its md5 is the canonical one, or its decompressed content has the
    recorded sha256 and size."""
    path = Path(path)
    name = name or path.name
    if name not in IDX_SHA256:
        raise ValueError(f"unknown file {name!r}; expected one of {list(ALL_FILES)}")
    return path.is_file() and _check(path, name) is None


def _progress(name: str, url: str, total: int | None, show: bool) -> tuple[Callable, Callable]:
    """(update(n_bytes), close()) of a progress report on stderr: a tqdm bar when tqdm is
    installed, else one line per file; both do nothing when ``show`` is false."""
    if not show:
        return (lambda n: None), (lambda: None)
    try:
        from tqdm import tqdm
    except ImportError:
        size = f" ({total / 1e6:.1f} MB)" if total else ""
        print(f"downloading {url}{size} ...", file=sys.stderr, flush=True)
        return (lambda n: None), (lambda: None)
    bar = tqdm(total=total, desc=name, unit="B", unit_scale=True, file=sys.stderr, leave=True)
    return bar.update, bar.close


def _fetch(url: str, part: Path, name: str, timeout: float, progress: bool) -> None:
    """Writes the body at ``url`` to ``part``.

    Raises:
      DownloadError: naming ``url``, for a network or HTTP error, a body shorter than its
        Content-Length, or one far larger than the file can be.
    """
    limit = IDX_SIZE[name] + (1 << 20)  # a gzip file is never much larger than its content
    request = urllib.request.Request(url, headers={"User-Agent": "mlf_jax"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if total is not None and total > limit:
                raise DownloadError(url, f"Content-Length {total} is too large for {name}")
            update, close = _progress(name, url, total, progress)
            got = 0
            try:
                with open(part, "wb") as f:
                    while chunk := response.read(1 << 16):
                        f.write(chunk)
                        got += len(chunk)
                        update(len(chunk))
                        if got > limit:
                            raise DownloadError(url, f"more than {limit} bytes; not {name}")
            finally:
                close()
    except DownloadError:
        raise
    except urllib.error.HTTPError as e:
        raise DownloadError(url, f"HTTP error {e.code} {e.reason}") from e
    except urllib.error.URLError as e:
        raise DownloadError(url, f"cannot connect: {e.reason}") from e
    except http.client.IncompleteRead as e:
        raise DownloadError(
            url, f"connection closed after {len(e.partial)} more bytes, {e.expected} missing"
        ) from e
    except (OSError, http.client.HTTPException) as e:
        raise DownloadError(url, f"transfer failed: {e!r}") from e
    if total is not None and got != total:
        raise DownloadError(url, f"connection closed after {got} of {total} bytes")


def download(
    cache_dir: str | os.PathLike | None = None,
    base_url: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
    files: Iterable[str] = ALL_FILES,
) -> Path:
    """Downloads the Fashion-MNIST files missing from ``cache_dir`` and checks them.

    Each file is written to ``<file>.part``, checked (:func:`is_valid`: the canonical md5, or
    the recorded sha256 and size of its decompressed IDX content), then renamed to ``<file>``
    (``os.replace``, atomic), so a file of that name is only ever a complete, checked one.
    Files already there and valid are not downloaded again; invalid ones are replaced.

    Args:
      cache_dir: where to put the files (created if needed); default
        :func:`default_cache_dir`.
      base_url: URL of the folder holding the files; default ``$MLF_JAX_FASHION_MNIST_URL``
        if set, else each of :data:`MIRRORS` in turn until one succeeds.
      progress: show a progress bar (tqdm if installed, else a line per file) on stderr.
      timeout: seconds to wait on the network before giving up.
      files: which of :data:`ALL_FILES` to get (all by default).

    Returns:
      ``cache_dir``, ready for :func:`load`.

    Raises:
      ValueError: for a name not in :data:`ALL_FILES`.
      DownloadError: (an ``OSError``) naming the URL, for a network or HTTP error or a transfer
        cut short; the ``.part`` file is deleted.
      ChecksumError: (a :class:`DataFileError`) naming the file, the URL and the expected and
        actual checksums, when the content is not the expected one; the ``.part`` file is
        deleted.
    """
    cache = Path(default_cache_dir() if cache_dir is None else cache_dir).expanduser()
    files = list(files)
    unknown = [n for n in files if n not in IDX_SHA256]
    if unknown:
        raise ValueError(f"unknown files {unknown}; expected some of {list(ALL_FILES)}")
    base = base_url or os.environ.get(URL_ENV)
    bases = [base] if base else list(MIRRORS)
    cache.mkdir(parents=True, exist_ok=True)
    for name in files:
        final = cache / name
        if is_valid(final, name):
            continue
        error: Exception | None = None
        for b in bases:
            try:
                _download_one(b.rstrip("/") + "/" + name, final, name, timeout, progress)
                error = None
                break
            except (DownloadError, ChecksumError) as e:
                error = e
        if error is not None:
            raise error
    return cache


def _download_one(url: str, final: Path, name: str, timeout: float, progress: bool) -> None:
    """Downloads ``url`` to ``<final>.part``, checks it and renames it to ``final``; deletes
    the ``.part`` file on any failure."""
    part = final.with_name(final.name + ".part")
    try:
        _fetch(url, part, name, timeout, progress)
        problem = _check(part, name)
        if problem is not None:
            raise ChecksumError(final, f"downloaded from {url}: {problem}; deleted it", url)
        os.replace(part, final)
    finally:
        part.unlink(missing_ok=True)
