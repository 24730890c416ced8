"""Prediction ids: which row a prediction is about, and where in the table it lives.

A prediction id reads ``<window>.<model version>.<digest>``, e.g. ``1996-08.3.9f2c4e0b5a1d7c36``:

* ``window`` and ``model version`` say where the row is stored. The predictions table is
  partitioned by ``window`` and each scoring run writes one window for one model version, so a
  trace reads one partition and, within it, only the files whose ``model_version`` statistics
  match; every row in those files shares the id's prefix, so their ``prediction_id`` min/max
  statistics prune too, even for a reader that does not parse the id.
* ``digest`` is 16 hex digits of a 64-bit hash of the model name, the model version and the
  row's key columns (the dataset's ``key_columns``), so the same model scoring the same row again
  gives the same id, and different rows of one window and model get different ones.

The digest is computed column-wise with numpy (no per-row Python), with an algorithm fixed
here and pinned by golden values in the tests, so that ids persisted today are the ids computed
tomorrow. (polars' ``hash`` is not used: it is documented as unstable across versions.)

1. ``h = seed``: the first 8 bytes (big-endian) of ``sha256("<model name>|<model version>")``.
2. For each key column in declared order, a 64-bit word per row:
   integers and booleans: the value (two's complement); datetimes: microseconds since the Unix
   epoch, UTC; dates: days since the epoch; durations: microseconds; floats: the IEEE-754 bits of
   the float64 value (``-0.0`` as ``0.0``); strings and anything else (cast to string): FNV-1a 64
   over the UTF-8 bytes; null: ``0x6e756c6c6e756c6c``.
3. ``h = mix(h ^ mix(word))`` where ``mix`` is the splitmix64 finaliser.

Two different rows of one window and model collide with probability about n^2 / 2^65 (about
3e-8 for a million rows); :func:`prediction_ids` refuses a batch in which that happens, rather
than writing two predictions under one id.

Ids written before this scheme (20 hex digits of a sha256, no dots) stay valid: they do not
parse, and the trace then scans the whole table for them.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from typing import TYPE_CHECKING, NamedTuple, Sequence

if TYPE_CHECKING:  # numpy and pyarrow are imported by the functions that compute ids, so that
    import numpy as np  # parsing an id (the trace command) does not pay for them
    import polars as pl

_G = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_NULL_WORD = 0x6E756C6C6E756C6C  # "nullnull"
_ID_RE = re.compile(r"^(?P<window>.+)\.(?P<version>\d+)\.(?P<digest>[0-9a-f]{16})$")


class ParsedId(NamedTuple):
    window: str
    model_version: int
    digest: str


def parse_prediction_id(prediction_id: str) -> ParsedId | None:
    """The window, model version and digest of an id; None for an id of the older form."""
    m = _ID_RE.match(prediction_id)
    if m is None:
        return None
    return ParsedId(m["window"], int(m["version"]), m["digest"])


@lru_cache(maxsize=1)
def _hex_pairs() -> np.ndarray:
    """byte -> its two hex digits, packed little-endian in a uint16 (viewed back as two bytes)."""
    import numpy as np

    return np.array([int.from_bytes(f"{i:02x}".encode(), "little") for i in range(256)],
                    dtype=np.uint16)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, element-wise on uint64 (wrapping arithmetic)."""
    import numpy as np

    z = z + np.uint64(_G)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_M1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
    return z ^ (z >> np.uint64(31))


def _fnv1a(strings: pl.Series) -> np.ndarray:
    """FNV-1a 64 of each string's UTF-8 bytes, one byte position at a time across all rows."""
    import numpy as np
    import polars as pl
    import pyarrow as pa

    arr = strings.cast(pl.String).to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = arr.cast(pa.large_string())
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64, count=len(arr) + 1,
                            offset=arr.offset * 8)
    data = (np.frombuffer(arr.buffers()[2], dtype=np.uint8) if arr.buffers()[2] is not None
            else np.zeros(0, dtype=np.uint8))
    starts, lengths = offsets[:-1], np.diff(offsets)
    h = np.full(len(arr), _FNV_OFFSET, dtype=np.uint64)
    prime = np.uint64(_FNV_PRIME)
    for j in range(int(lengths.max()) if len(arr) else 0):
        rows = np.nonzero(lengths > j)[0]
        h[rows] = (h[rows] ^ data[starts[rows] + j].astype(np.uint64)) * prime
    return h


def _words(col: pl.Series) -> np.ndarray:
    """One uint64 per value of a key column (see the module doc)."""
    import numpy as np
    import polars as pl

    dtype = col.dtype
    if isinstance(dtype, pl.Datetime):
        ints = col.dt.epoch("us")
    elif dtype == pl.Date:
        ints = col.dt.epoch("d")
    elif isinstance(dtype, pl.Duration):
        ints = col.dt.total_microseconds()
    elif dtype.is_integer() or dtype == pl.Boolean:
        ints = col
    elif dtype.is_float():
        floats = col.cast(pl.Float64).fill_null(0.0).to_numpy() + 0.0  # -0.0 + 0.0 is 0.0
        words = floats.view(np.uint64).copy()
        words[col.is_null().to_numpy()] = _NULL_WORD
        return words
    else:
        words = _fnv1a(col.fill_null(""))
        words[col.is_null().to_numpy()] = _NULL_WORD
        return words
    words = ints.cast(pl.Int64).fill_null(0).to_numpy().view(np.uint64).copy()
    if col.null_count():
        words[col.is_null().to_numpy()] = _NULL_WORD
    return words


def key_digests(name: str, version: int, rows: pl.DataFrame, keys: Sequence[str]) -> np.ndarray:
    """The 64-bit digest of each row's key for model ``name`` v``version`` (uint64 array)."""
    import numpy as np

    seed = int.from_bytes(hashlib.sha256(f"{name}|{version}".encode()).digest()[:8], "big")
    h = np.full(rows.height, np.uint64(seed), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for key in keys:
            h = _mix(h ^ _mix(_words(rows.get_column(key))))
    return h


def _hex16(h: np.ndarray) -> pl.Series:
    """Each uint64 as 16 lower-case hex digits."""
    import numpy as np
    import polars as pl
    import pyarrow as pa

    big_endian = h.byteswap() if np.little_endian else h
    digits = np.take(_hex_pairs(), big_endian.view(np.uint8)).view(np.uint8)
    offsets = np.arange(0, 16 * (len(h) + 1), 16, dtype=np.int64)
    return pl.Series(pa.LargeStringArray.from_buffers(
        len(h), pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(digits))))


def prediction_ids(name: str, version: int, rows: pl.DataFrame, keys: Sequence[str],
                   window: str = "window") -> pl.Series:
    """The id of each row of ``rows`` scored by ``name`` v``version``: ``<window>.<version>.<digest>``.
    Raises ValueError when two rows of one window get the same id (same key, or a collision)."""
    import polars as pl

    h = key_digests(name, version, rows, keys)
    frame = pl.DataFrame({"w": rows.get_column(window).cast(pl.String), "h": h})
    if pl.Series(h).n_unique() != len(h) and frame.n_unique() != frame.height:
        dup = frame.filter(frame.is_duplicated()).head(3)
        raise ValueError(f"{name} v{version}: {frame.height - frame.n_unique()} row(s) share a "
                         f"window and key digest (keys {list(keys)}), e.g. {dup.rows()}; the key "
                         "columns must identify a row within its window.")
    return frame.select(pl.concat_str([pl.col("w"), pl.lit(f".{int(version)}."), _hex16(h)])
                        .alias("prediction_id")).to_series()
