"""Chunked column storage for replay: fixed-size chunks, zlib-packed image blocks, an LRU cache.

Each stream (environment) of the buffer is cut into chunks of ``chunk_size`` consecutive steps;
chunk ``c`` holds the stream steps ``[c * chunk_size, (c + 1) * chunk_size)`` of every stream.
The newest chunk is open (plain numpy arrays being filled); once full, its large uint8 columns
(images) are packed: every block of ``block_size`` frames of one stream is zlib-compressed on its
own, so sampling a window decodes only the few blocks it touches. Full chunks are immutable.
"""

from __future__ import annotations

import collections
import itertools
import threading
import zlib

import numpy as np

_SERIAL = itertools.count()

# uint8 columns with at least this many bytes per step are packed (images); the rest stay raw.
MIN_PACKED_BYTES = 256


class PackedColumn:
  """The frames of one column of one stream of a chunk as zlib blocks.

  Attributes:
    blob: All compressed blocks, concatenated.
    offsets: int64 ``[num_blocks + 1]``; block ``b`` is ``blob[offsets[b]:offsets[b + 1]]``.
  """

  __slots__ = ("blob", "offsets")

  def __init__(self, blob: bytes, offsets: np.ndarray):
    self.blob = blob
    self.offsets = offsets

  @classmethod
  def pack(cls, frames: np.ndarray, block_size: int, level: int) -> PackedColumn:
    """Compresses ``frames`` (``[n, ...]`` uint8) in blocks of ``block_size`` frames."""
    frames = np.ascontiguousarray(frames)
    parts = [zlib.compress(frames[i : i + block_size], level) for i in range(0, len(frames), block_size)]
    offsets = np.zeros(len(parts) + 1, np.int64)
    np.cumsum([len(p) for p in parts], out=offsets[1:])
    return cls(b"".join(parts), offsets)

  def block(self, b: int, frame_shape: tuple) -> np.ndarray:
    """Decodes block ``b`` into a read-only ``[block_size, *frame_shape]`` uint8 array."""
    data = zlib.decompress(memoryview(self.blob)[self.offsets[b] : self.offsets[b + 1]])
    return np.frombuffer(data, np.uint8).reshape((-1, *frame_shape))

  @property
  def nbytes(self) -> int:
    return len(self.blob) + self.offsets.nbytes


class Chunk:
  """``chunk_size`` steps of every stream.

  Attributes:
    index: The chunk index: it holds stream steps ``[index * chunk_size, (index + 1) * chunk_size)``.
    raw: Column path -> array ``[num_streams, chunk_size, ...]`` for unpacked columns.
    packed: Column path -> list (one per stream) of :class:`PackedColumn`.
    serial: A process-unique number naming this object in the decode cache.
  """

  __slots__ = ("index", "raw", "packed", "serial")

  def __init__(self, index: int, raw: dict, packed: dict | None = None):
    self.index = index
    self.raw = raw
    self.packed = packed or {}
    self.serial = next(_SERIAL)

  @property
  def nbytes(self) -> int:
    total = sum(a.nbytes for a in self.raw.values())
    return total + sum(p.nbytes for streams in self.packed.values() for p in streams)

  @classmethod
  def empty(cls, index: int, columns, num_streams: int, chunk_size: int) -> Chunk:
    """An open chunk: uninitialised arrays for every column (``columns``: path -> TensorSpec)."""
    raw = {
      path: np.empty((num_streams, chunk_size, *spec.shape.as_list()), spec.dtype.as_numpy_dtype)
      for path, spec in columns.items()
    }
    return cls(index, raw)

  def packed_copy(self, pack_paths, block_size: int, level: int, length: int | None = None) -> Chunk:
    """A new chunk with the columns in ``pack_paths`` packed (rows ``[:length]`` only, if given)."""
    raw, packed = {}, {}
    for path, array in self.raw.items():
      array = array if length is None else array[:, :length]
      if path in pack_paths:
        packed[path] = [PackedColumn.pack(stream, block_size, level) for stream in array]
      else:
        raw[path] = array
    packed.update(self.packed)
    return Chunk(self.index, raw, packed)


class BlockCache:
  """A thread-safe LRU cache of decoded blocks, bounded in bytes."""

  def __init__(self, max_bytes: int):
    self.max_bytes = max_bytes
    self.nbytes = 0
    self.hits = 0
    self.misses = 0
    self._items: collections.OrderedDict = collections.OrderedDict()
    self._lock = threading.Lock()

  def get(self, key):
    with self._lock:
      value = self._items.get(key)
      if value is None:
        self.misses += 1
        return None
      self.hits += 1
      self._items.move_to_end(key)
      return value

  def put(self, key, value: np.ndarray) -> None:
    if value.nbytes > self.max_bytes:
      return
    with self._lock:
      if key in self._items:
        return
      self._items[key] = value
      self.nbytes += value.nbytes
      while self.nbytes > self.max_bytes:
        _, old = self._items.popitem(last=False)
        self.nbytes -= old.nbytes

  def clear(self) -> None:
    with self._lock:
      self._items.clear()
      self.nbytes = 0
