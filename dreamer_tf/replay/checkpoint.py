"""Crash-safe files of a replay checkpoint directory.

Layout of a checkpoint directory::

  manifest.json                     counters, stream positions, chunk list, rng state, spec
  chunk_<lineage>_<index>.npz       one full (immutable) chunk, written once
  open_<lineage>_<index>_<n>.npz    the first n steps of the open chunk at save time

Every file is written to a temporary name, flushed, fsynced and then renamed into place, so a
file with a final name is always complete. Chunk file names are determined by their content,
so a later save skips the files that already exist. The manifest is renamed into place last and
stale files are deleted only after that: a kill at any moment leaves the previous checkpoint
complete and readable.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import zipfile

import numpy as np

from dreamer_tf.errors import UserError
from dreamer_tf.replay.storage import Chunk, PackedColumn

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
_OWN_FILE = re.compile(r"^(chunk_[0-9a-f]+_\d+(_r\d+)?\.npz|open_[0-9a-f]+_\d+_\d+\.npz|\..*\.tmp)$")


def chunk_name(lineage: str, index: int, revision: int = 0) -> str:
  """A full chunk's file; ``revision`` > 0 names a rewrite after replay-context updates."""
  return f"chunk_{lineage}_{index:09d}_r{revision}.npz" if revision else f"chunk_{lineage}_{index:09d}.npz"


def open_name(lineage: str, index: int, length: int) -> str:
  return f"open_{lineage}_{index:09d}_{length:06d}.npz"


def _fsync_dir(directory: pathlib.Path) -> None:
  try:
    fd = os.open(directory, os.O_RDONLY)
  except OSError:  # Not supported on this platform.
    return
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def atomic_write(path: pathlib.Path, write_fn) -> int:
  """Writes a file through ``write_fn(fileobj)`` to a temporary name, then renames it.

  Returns:
    The size of the written file in bytes.
  """
  tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
  try:
    with open(tmp, "wb") as f:
      write_fn(f)
      f.flush()
      os.fsync(f.fileno())
  except BaseException:  # E.g. a full disk: no partial file is left behind.
    tmp.unlink(missing_ok=True)
    raise
  size = tmp.stat().st_size
  os.replace(tmp, path)
  return size


def write_chunk(path: pathlib.Path, chunk: Chunk, length: int) -> int:
  """Writes the first ``length`` steps of ``chunk`` (already packed as wanted) as an npz file."""
  arrays = {"length": np.int64(length)}
  for col, array in chunk.raw.items():
    arrays[f"{col}|raw"] = array[:, :length]
  for col, streams in chunk.packed.items():
    for s, packed in enumerate(streams):
      arrays[f"{col}|{s}|blob"] = np.frombuffer(packed.blob, np.uint8)
      arrays[f"{col}|{s}|offsets"] = packed.offsets
  return atomic_write(path, lambda f: _write_npz(f, arrays))


def _write_npz(fileobj, arrays: dict) -> None:
  """Writes ``arrays`` as an uncompressed npz archive (what ``np.load`` reads) to ``fileobj``.

  Unlike ``np.savez``, the zip archive is closed when a write fails midway (a full disk), so no
  half-written ``ZipFile`` is left to fail again ("seek of closed file") when it is collected.
  """
  with zipfile.ZipFile(fileobj, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
    for name, array in arrays.items():
      with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
        np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)


def read_chunk(path: pathlib.Path, index: int, columns: dict, num_streams: int, expected_bytes: int):
  """Reads a chunk file written by :func:`write_chunk`.

  Args:
    path: The file.
    index: The chunk index recorded in the manifest.
    columns: Column path -> TensorSpec of the buffer.
    num_streams: The number of streams of the buffer.
    expected_bytes: The file size recorded in the manifest.

  Returns:
    ``(chunk, length)``.

  Raises:
    UserError: The file is missing, truncated or corrupt.
  """
  if not path.exists():
    raise UserError(f"replay checkpoint file {path} is missing: restore from a complete checkpoint directory")
  size = path.stat().st_size
  if size != expected_bytes:
    raise UserError(
      f"replay checkpoint file {path} is truncated or corrupt ({size} bytes, manifest says "
      f"{expected_bytes}): delete the replay checkpoint directory to start with an empty replay"
    )
  raw, packed = {}, {}
  try:
    with np.load(path, allow_pickle=False) as data:
      length = int(data["length"])
      for col, spec in columns.items():
        shape = (num_streams, length, *spec.shape.as_list())
        if f"{col}|raw" in data.files:
          array = data[f"{col}|raw"]
          if array.shape != shape or array.dtype != spec.dtype.as_numpy_dtype:
            raise ValueError(f"column {col} has shape {array.shape}, expected {shape}")
          raw[col] = array
        else:
          packed[col] = [
            PackedColumn(data[f"{col}|{s}|blob"].tobytes(), data[f"{col}|{s}|offsets"].astype(np.int64))
            for s in range(num_streams)
          ]
  except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
    raise UserError(
      f"replay checkpoint file {path} is truncated or corrupt ({type(e).__name__}: {e}): delete the "
      "replay checkpoint directory to start with an empty replay"
    ) from None
  return Chunk(index, raw, packed), length


def write_manifest(directory: pathlib.Path, manifest: dict) -> None:
  """Atomically replaces the manifest, then fsyncs the directory."""
  data = json.dumps(manifest, indent=1, sort_keys=True).encode()
  atomic_write(directory / MANIFEST, lambda f: f.write(data))
  _fsync_dir(directory)


def read_manifest(directory: pathlib.Path) -> dict:
  """Reads and checks the manifest of a checkpoint directory.

  Raises:
    UserError: The manifest is missing, unreadable or of another format version.
  """
  path = directory / MANIFEST
  if not path.exists():
    raise UserError(f"no replay checkpoint in {directory} ({MANIFEST} is missing): check the directory")
  try:
    manifest = json.loads(path.read_text())
    version = manifest["format_version"]
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise UserError(
      f"replay checkpoint manifest {path} is corrupt ({type(e).__name__}): delete the replay "
      "checkpoint directory to start with an empty replay"
    ) from None
  if version != FORMAT_VERSION:
    raise UserError(
      f"replay checkpoint {path} has format version {version}, this dreamer_tf reads version "
      f"{FORMAT_VERSION}: use the matching dreamer_tf version or start with an empty replay"
    )
  return manifest


def remove_stale(directory: pathlib.Path, keep: set) -> list[str]:
  """Deletes this module's files in ``directory`` that are not in ``keep``; returns their names."""
  removed = []
  for entry in os.scandir(directory):
    if entry.name in keep or entry.name == MANIFEST or not _OWN_FILE.match(entry.name):
      continue
    try:
      os.remove(entry.path)
      removed.append(entry.name)
    except FileNotFoundError:
      pass
  return removed
