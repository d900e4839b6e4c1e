"""Writes tiny CIFAR10 copies in the real on-disk formats.

- The python version (``cifar-10-python.tar.gz`` / ``cifar-10-batches-py/``): dicts pickled
  by Python 2 (protocol 2, strings as byte strings, so keys read back as ``b'data'`` etc.
  with ``encoding='bytes'``), ``data`` an ``[N, 3072]`` uint8 array whose row holds the
  red, then green, then blue 32x32 plane, each row-major; ``labels`` a list of ints.
- The binary version (``cifar-10-batches-bin/``) that TFDS's own cifar10 builder reads:
  records of one label byte followed by the same 3072 bytes.
- A TFDS data_dir with cifar10 prepared as array_record, by running TFDS's real cifar10
  builder on the binary files (see :func:`prepare_tfds`).
"""

import importlib.resources
import importlib.util
import io
import pickle
import struct
import sys
import tarfile
import zlib
from contextlib import ExitStack
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import numpy as np

NAMES = ("airplane automobile bird cat deer dog frog horse ship truck").split()
TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))


def to_rows(images: np.ndarray) -> np.ndarray:
    """``[N, 32, 32, 3]`` -> ``[N, 3072]``: ``row[c * 1024 + r * 32 + k] = image[r, k, c]``."""
    n = len(images)
    rows = np.empty((n, 3072), np.uint8)
    for c in range(3):
        rows[:, c * 1024 : (c + 1) * 1024] = images[..., c].reshape(n, 1024)
    return rows


def tiny_cifar(sizes=(3, 2, 3, 2, 2), n_test=4, seed=0):
    """``{batch name: (images [n, 32, 32, 3] uint8, labels [n])}`` for the 5+1 batches."""
    rng = np.random.default_rng(seed)
    names = TRAIN + ("test_batch",)
    return {
        name: (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n))
        for name, n in zip(names, (*sizes, n_test), strict=True)
    }


class _Py2Pickler(pickle._Pickler):
    """Pickles as Python 2's cPickle wrote the CIFAR files: every string a byte string
    (``BINSTRING``; read back as ``bytes`` with ``encoding='bytes'``)."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_bytes(self, obj):
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<I", n) + obj)
        self.memoize(obj)

    def save_str(self, obj):
        self.save_bytes(obj.encode("latin-1"))

    dispatch[bytes] = save_bytes
    dispatch[str] = save_str


def py2_dumps(obj) -> bytes:
    """A protocol-2 pickle like Python 2's, numpy arrays under ``numpy.core.multiarray``."""
    f = io.BytesIO()
    _Py2Pickler(f, protocol=2).dump(obj)
    return f.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def pickled_batch(images, labels, name: str, protocol: int | None = None) -> bytes:
    """A batch dict pickled Python-2 style, or by Python 3's pickle with ``protocol``."""
    batch = {
        "batch_label": name,
        "labels": [int(x) for x in labels],
        "data": to_rows(images),
        "filenames": [f"img_{i}.png" for i in range(len(labels))],
    }
    if protocol is None:
        return py2_dumps(batch)
    return pickle.dumps({k.encode(): v for k, v in batch.items()}, protocol=protocol)


def _meta(n: int) -> bytes:
    return py2_dumps({"num_cases_per_batch": n, "label_names": list(NAMES), "num_vis": 3072})


def python_files(batches) -> dict[str, bytes]:
    """File name -> content of ``cifar-10-batches-py/``."""
    files = {name: pickled_batch(*batches[name], name) for name in batches}
    files["batches.meta"] = _meta(len(batches[TRAIN[0]][1]))
    files["readme.html"] = b"<html>tiny</html>"
    return files


def write_folder(directory: Path, batches) -> Path:
    """``directory/cifar-10-batches-py/`` with the pickled batches; returns that folder."""
    folder = directory / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in python_files(batches).items():
        (folder / name).write_bytes(content)
    return folder


def write_archive(path: Path, batches) -> Path:
    """``cifar-10-python.tar.gz`` with members ``cifar-10-batches-py/<file>``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        folder = tarfile.TarInfo("cifar-10-batches-py")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for name, content in python_files(batches).items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return path


def write_binary(directory: Path, batches) -> Path:
    """``directory/cifar-10-batches-bin/``: ``<name>.bin`` of (label byte, 3072 bytes) records."""
    folder = directory / "cifar-10-batches-bin"
    folder.mkdir(parents=True, exist_ok=True)
    for name, (images, labels) in batches.items():
        rows = to_rows(images)
        records = b"".join(bytes([int(y)]) + rows[i].tobytes() for i, y in enumerate(labels))
        (folder / f"{name}.bin").write_bytes(records)
    (folder / "batches.meta.txt").write_text("\n".join(NAMES) + "\n")
    return folder


# --- Minimal PNG codec (8-bit RGB, filter 0), used where TFDS would need TF, cv2 or PIL ---


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(image: np.ndarray) -> bytes:
    height, width, _ = image.shape
    raw = b"".join(
        b"\x00" + np.ascontiguousarray(image[r], np.uint8).tobytes() for r in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw))
        + _chunk(b"IEND", b"")
    )


def decode_png(data: bytes) -> np.ndarray:
    """Decodes what :func:`encode_png` writes (and nothing more)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert (depth, colour) == (8, 2), "only 8-bit RGB"
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, 1 + 3 * width)
    assert (raw[:, 0] == 0).all(), "only filter type 0"
    return raw[:, 1:].reshape(height, width, 3).copy()


def have_image_decoder() -> bool:
    """Whether TFDS can decode images with numpy (it needs OpenCV or PIL)."""
    return any(importlib.util.find_spec(m) is not None for m in ("cv2", "PIL"))


def patch_image_decoder():
    """A context in which TFDS decodes images with :func:`decode_png` (no cv2/PIL here)."""
    from tensorflow_datasets.core.features import image_feature

    return mock.patch.object(
        image_feature.Image, "decode_example_np", lambda self, example: decode_png(example)
    )


def prepare_tfds(data_dir: Path, download_dir: Path, batches) -> Path:
    """Prepares cifar10 as array_record in ``data_dir`` with TFDS's own cifar10 builder.

    The builder's download is replaced by ``download_dir`` holding the binary version of
    ``batches``. Where TensorFlow is not installed (as here), three test-only stand-ins:
    the builder's ``tf.io.gfile.GFile`` is ``open``, PNG encoding is :func:`encode_png`,
    and the missing ``importlib_resources`` module is the standard library's. TFDS's
    example serialisation, shuffling and array_record writing run for real.
    """
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core.features import image_feature
    from tensorflow_datasets.image_classification import cifar

    write_binary(download_dir, batches)
    with ExitStack() as stack:
        if importlib.util.find_spec("importlib_resources") is None:
            stack.enter_context(
                mock.patch.dict(sys.modules, importlib_resources=importlib.resources)
            )
        if importlib.util.find_spec("tensorflow") is None:
            gfile = SimpleNamespace(GFile=open)
            stack.enter_context(
                mock.patch.object(cifar, "tf", SimpleNamespace(io=SimpleNamespace(gfile=gfile)))
            )
        stack.enter_context(
            mock.patch.object(
                image_feature._ImageEncoder, "_encode_image", lambda self, x: encode_png(x)
            )
        )
        stack.enter_context(
            mock.patch.object(
                tfds.download.DownloadManager,
                "download_and_extract",
                return_value=str(download_dir),
            )
        )
        builder = tfds.builder("cifar10", data_dir=data_dir, file_format="array_record")
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(try_download_gcs=False)
        )
    return data_dir
