"""Reader for the IDX format of MNIST and Fashion-MNIST (plain or gzipped).

An IDX file is a 4-byte magic number, one big-endian uint32 per dimension,
then the array in C order, big-endian:

    byte 0-1   0x00 0x00
    byte 2     element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
               0x0D float32, 0x0E float64
    byte 3     number of dimensions (1 for labels, 3 for images)
    then       ndim x uint32 sizes, then prod(sizes) elements

The reader checks the magic number, the dimensions and that the file length
is exactly what the header promises, and names the file in every error.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = ["IDXFormatError", "read_idx", "write_idx"]

# IDX element type code -> big-endian NumPy dtype
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
_MAX_NDIM = 8


class IDXFormatError(ValueError):
    """A file that is not a well-formed IDX file (bad magic, dimensions or length)."""


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as f:
        head = f.read(2)
        f.seek(0)
        if head != _GZIP_MAGIC:
            return f.read()
    try:
        with gzip.open(path, "rb") as g:
            return g.read()
    except (EOFError, OSError, zlib.error) as exc:
        # EOFError: truncated archive; BadGzipFile (an OSError) / zlib.error: corrupt data
        raise IDXFormatError(f"{path}: corrupt or truncated gzip file ({exc})") from None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzipped or not; detected by content) into a native-endian array.

    Raises FileNotFoundError if ``path`` does not exist and IDXFormatError if
    it is not a valid IDX file.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise IDXFormatError(f"{path}: not an IDX file (only {len(data)} bytes)")
    zero0, zero1, type_code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0 or type_code not in IDX_DTYPES:
        raise IDXFormatError(f"{path}: not an IDX file (bad magic number 0x{data[:4].hex()})")
    if not 1 <= ndim <= _MAX_NDIM:
        raise IDXFormatError(f"{path}: IDX header gives {ndim} dimensions (expected 1 to {_MAX_NDIM})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXFormatError(f"{path}: truncated IDX header ({len(data)} bytes, need {header})")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = IDX_DTYPES[type_code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise IDXFormatError(
            f"{path}: IDX file {what}: header says shape {tuple(shape)} of {dtype.name} "
            f"({expected} bytes), file has {len(data)} bytes")
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> None:
    """Write ``array`` as an IDX file; gzipped if ``compress`` (default: name ends in .gz)."""
    path = Path(path)
    array = np.asarray(array)
    for code, dt in IDX_DTYPES.items():
        if dt.kind == array.dtype.kind and dt.itemsize == array.dtype.itemsize:
            break
    else:
        raise TypeError(f"array: dtype {array.dtype} has no IDX type code")
    if not 1 <= array.ndim <= _MAX_NDIM:
        raise ValueError(f"array: IDX needs 1 to {_MAX_NDIM} dimensions, got {array.ndim}")
    payload = (bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
               + np.ascontiguousarray(array, dtype=dt).tobytes())
    if compress is None:
        compress = path.name.endswith(".gz")
    if compress:
        payload = gzip.compress(payload, mtime=0)
    path.write_bytes(payload)
