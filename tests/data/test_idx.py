"""The IDX reader on files written byte by byte in the format's layout."""

import gzip

import numpy as np
import pytest

from mlf_jax.data import read_idx

from .idx_files import write_idx


@pytest.mark.parametrize("compress", [True, False])
def test_round_trip(tmp_path, compress):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / ("a.gz" if compress else "a"), a, compress=compress)
    np.testing.assert_array_equal(read_idx(path), a)


def test_header_bytes_by_hand(tmp_path):
    # 0x00 0x00 0x08 (uint8) 0x01 (rank 1), dim 3 big-endian, then 7 8 9
    path = tmp_path / "labels"
    path.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]))
    np.testing.assert_array_equal(read_idx(path), [7, 8, 9])


def test_big_endian_int32(tmp_path):
    path = tmp_path / "ints"
    path.write_bytes(
        bytes([0, 0, 0x0C, 1, 0, 0, 0, 2]) + (258).to_bytes(4, "big") + (1).to_bytes(4, "big")
    )
    np.testing.assert_array_equal(read_idx(path), [258, 1])


def test_bad_magic_and_truncated_data_are_errors(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(bad)
    short = tmp_path / "short.gz"
    with gzip.open(short, "wb") as f:
        f.write(bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2]))
    with pytest.raises(ValueError, match=r"shape \(5,\).*holds 2 bytes"):
        read_idx(short)
