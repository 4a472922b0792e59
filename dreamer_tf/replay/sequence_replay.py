"""SequenceReplayBuffer: a TF-Agents replay buffer of fixed-length windows of steps.

Stores the step format of docs/CONTRIBUTING.md, one stream per environment of the batch, and
samples windows of consecutive steps uniformly: DreamerV3 trains on batches of 16 sequences of
64 steps drawn uniformly from a replay of 10^6 steps (Hafner et al. 2023, hyperparameter table).
Windows may cross episode boundaries (``is_first`` marks them); ``is_first`` is forced on the first step of every
sampled window so the world model starts from its initial state there.

Images are kept as zlib-compressed blocks of a few frames (see :mod:`dreamer_tf.replay.storage`),
15-70x smaller than raw 64x64x3 Atari frames (3x for rendered DMC frames); memory grows with the data, chunk by chunk.
"""

from __future__ import annotations

import collections
import os
import pathlib
import threading
import time
import uuid
from collections.abc import Mapping

import numpy as np
import tensorflow as tf
from tf_agents.replay_buffers import replay_buffer

from dreamer_tf.errors import UserError
from dreamer_tf.replay import checkpoint
from dreamer_tf.replay.dataset_options import fixed_pipeline
from dreamer_tf.replay.spec import REPLAY_ID_KEY, flatten_spec, get_path, plain_spec, spec_signature, unflatten
from dreamer_tf.replay.storage import MIN_PACKED_BYTES, BlockCache, Chunk

_NO_SINGLE_PASS = "SequenceReplayBuffer samples uniformly; single_deterministic_pass is unsupported"
BufferInfo = collections.namedtuple("BufferInfo", ["ids", "probabilities"])


class _State:
  """Mutable storage state, swapped whole by ``clear`` and ``restore``."""

  def __init__(self):
    self.chunks: dict[int, Chunk] = {}  # chunk index -> chunk; the last one may be open.
    self.start = 0  # First stored stream step (all streams advance in lockstep).
    self.end = 0  # One past the last stored stream step.
    self.lineage = uuid.uuid4().hex[:12]  # Names this buffer's data in checkpoint file names.
    self.added = 0  # Steps added over the buffer's lifetime (all streams).
    self.queue: collections.deque = collections.deque()  # Online windows (stream, start) not yet sampled.
    self.dirty: set[int] = set()  # Chunks changed by ``update`` since the last save.
    self.revisions: dict[int, int] = {}  # Chunk index -> times its saved file was rewritten after updates.


class SequenceReplayBuffer(replay_buffer.ReplayBuffer):
  """Compressed sequence replay, uniform over windows of consecutive steps of one stream.

  Use from the training loop::

    replay = SequenceReplayBuffer(step_spec(obs_spec, act_spec), batch_size=num_envs,
                                  capacity=config.replay.capacity)
    observer = DreamerStepObserver(replay)          # PyDriver(..., observers=[observer])
    dataset = replay.as_dataset(sample_batch_size=16, num_steps=64)   # after >= 64 steps
    for batch in dataset: agent.train(batch)        # batch: nested dict [16, 64, ...]
    replay.save(dir) / replay.restore(dir)

  Adding happens on the caller's thread (one writer); sampling may run concurrently on any
  number of threads (tf.data workers). All streams advance in lockstep: every ``add_batch``
  adds one step to each stream.
  """

  def __init__(
    self,
    data_spec: Mapping,
    batch_size: int,
    capacity: int,
    *,
    chunk_size: int = 256,
    block_size: int = 16,
    compress: bool = True,
    compress_level: int = 1,
    cache_bytes: int = 64 << 20,
    seed: int | None = None,
    online_length: int = 0,
  ):
    """Creates an empty buffer (no memory is reserved up front).

    Args:
      data_spec: Nested dict of ``tf.TensorSpec`` for one step (see :func:`step_spec`).
      batch_size: Number of streams (environments) added per ``add_batch``.
      capacity: Stored steps over all streams; the oldest steps are evicted first (FIFO).
        Each stream keeps ``capacity // batch_size`` steps.
      chunk_size: Steps per stream per chunk: the unit of packing, eviction and checkpoint files.
      block_size: Frames per zlib block of a packed image column (the unit of decoding).
      compress: Whether to pack image columns of full chunks (False keeps raw arrays).
      compress_level: zlib level (1 is fastest; higher levels gain little on frames).
      cache_bytes: Budget of the LRU cache of decoded blocks.
      seed: Seed of the sampling generator.
      online_length: 0, or the online queue of the current generation (replay.online) for windows
        of this length: as in the author's current code (embodied/core/replay.py, ``online``), each
        stream queues the window that ends with its stream step ``n`` whenever ``n`` is a positive
        multiple of the length (windows starting at steps 1, L + 1, 2L + 1, ...: fresh and
        non-overlapping), and every sample of that length takes queued windows first (oldest
        first, each once; evicted ones are dropped), the rest uniformly.
    """
    super().__init__(data_spec, capacity, stateful_dataset=True)
    # Plain Python state: tf.Module's attribute tracking would wrap dicts in slow proxies.
    self._self_setattr_tracking = False
    if batch_size < 1 or capacity < batch_size:
      raise UserError(f"replay needs batch_size >= 1 and capacity >= batch_size, got {batch_size}/{capacity}")
    if chunk_size % block_size:
      raise UserError(f"replay chunk_size={chunk_size} must be a multiple of block_size={block_size}")
    self._spec = plain_spec(data_spec)
    self._columns = dict(flatten_spec(self._spec))
    self._num_streams = batch_size
    self._chunk_size = chunk_size
    self._block_size = block_size
    self._compress = compress
    self._level = compress_level
    self._pack_paths = frozenset(
      path
      for path, spec in self._columns.items()
      if compress and spec.dtype == tf.uint8 and spec.shape.num_elements() >= MIN_PACKED_BYTES
    )
    self._cache = BlockCache(cache_bytes)
    self._rng = np.random.default_rng(seed)
    self._lock = threading.Lock()  # Guards _state and _rng (short critical sections only).
    self._data_ready = threading.Condition(self._lock)
    self._write_lock = threading.Lock()  # Serialises add_batch, update, save, restore and clear.
    self._raw_lock = threading.Lock()  # Serialises ``update``'s writes with the copies out of raw columns.
    self._state = _State()
    if online_length < 0:
      raise UserError(f"replay online_length must not be negative, got {online_length}")
    self._online_length = online_length

  @classmethod
  def from_config(cls, config, data_spec: Mapping, **kwargs) -> SequenceReplayBuffer:
    """Creates the buffer from ``config.replay.capacity`` (steps), ``config.run.envs``, ``run.seed`` and
    ``replay.online`` (the queue for windows of ``replay.batch_length + replay.context`` steps)."""
    online = config.replay.batch_length + config.replay.context if config.replay.online else 0
    kwargs.setdefault("online_length", online)
    return cls(data_spec, config.run.envs, config.replay.capacity, seed=config.run.seed, **kwargs)

  # Properties.

  @property
  def data_spec(self) -> dict:
    return self._spec

  @property
  def num_streams(self) -> int:
    return self._num_streams

  @property
  def size(self) -> int:
    """Stored steps over all streams."""
    state = self._state
    return self._num_streams * (state.end - state.start)

  @property
  def queued(self) -> int:
    """Online windows waiting to be sampled (0 without the online queue)."""
    return len(self._state.queue)

  @property
  def stream_length(self) -> int:
    """Stored steps per stream."""
    return self._state.end - self._state.start

  def stats(self) -> dict:
    """Memory figures for logging.

    Returns:
      ``steps`` (stored steps), ``bytes`` (memory held by the stored data including the open
      chunk, whose arrays are allocated whole), ``bytes_per_step``, ``raw_bytes`` (what the stored
      steps take uncompressed), ``compression_ratio`` (raw / held), ``chunks`` and
      ``cache_bytes``/``cache_hit_rate`` of the decode cache.
    """
    with self._lock:
      chunks = list(self._state.chunks.values())
      steps = self.size
    held = sum(c.nbytes for c in chunks)
    step_bytes = sum(s.dtype.size * s.shape.num_elements() for s in self._columns.values())
    raw = steps * step_bytes
    lookups = self._cache.hits + self._cache.misses
    return {
      "steps": steps,
      "bytes": held,
      "bytes_per_step": held / steps if steps else 0.0,
      "raw_bytes": raw,
      "compression_ratio": raw / held if held else 0.0,
      "chunks": len(chunks),
      "cache_bytes": self._cache.nbytes,
      "cache_hit_rate": self._cache.hits / lookups if lookups else 0.0,
    }

  # Adding.

  def _add_batch(self, items) -> None:
    with self._write_lock:
      state = self._state
      cs = self._chunk_size
      index, row = divmod(state.end, cs)
      chunk = state.chunks.get(index)
      if chunk is None:
        chunk = Chunk.empty(index, self._columns, self._num_streams, cs)
        with self._lock:
          state.chunks[index] = chunk
      for path, spec in self._columns.items():
        try:
          value = np.asarray(get_path(items, path))
        except (KeyError, TypeError):
          raise UserError(f"replay add_batch: the step has no '{path}'; make it follow the replay data spec") from None
        expected = (self._num_streams, *spec.shape.as_list())
        if value.shape != expected:
          raise UserError(f"replay add_batch: '{path}' has shape {value.shape}, expected {expected}")
        chunk.raw[path][:, row] = value
      if row == cs - 1 and self._pack_paths:
        full = chunk.packed_copy(self._pack_paths, self._block_size, self._level)
      else:
        full = None
      with self._lock:
        if full is not None:
          state.chunks[index] = full
        state.end += 1
        state.added += self._num_streams
        step, length = state.end - 1, self._online_length
        if length and step >= length and step % length == 0:
          state.queue.extend((stream, step - length + 1) for stream in range(self._num_streams))
        self._evict_locked()
        self._data_ready.notify_all()

  def _evict_locked(self) -> None:
    state = self._state
    per_stream = self._capacity // self._num_streams
    state.start = max(state.start, state.end - per_stream)
    first_needed = state.start // self._chunk_size
    for index in [i for i in state.chunks if i < first_needed]:
      del state.chunks[index]
    while state.queue and state.queue[0][1] < state.start:
      state.queue.popleft()

  # Writing back.

  def update(self, ids, values: Mapping, offset: int = 0) -> int:
    """Overwrites stored values of unpacked columns at sampled windows (the replay-context write-back).

    Args:
      ids: ``BufferInfo.ids`` of the sampled windows (stream and start step), shape ``[B]``.
      values: Column path (``"a/b"``) -> array ``[B, L, ...]``, written at steps
        ``start + offset .. start + offset + L - 1`` of each window's stream.
      offset: Steps between a window's start and its first written step.

    Returns:
      The number of windows written; windows no longer fully stored are skipped.

    Raises:
      UserError: A path that is not an unpacked column of this buffer.
    """
    ids = np.asarray(ids, np.int64).reshape(-1)
    values = {path: np.asarray(value) for path, value in values.items()}
    for path in values:
      if path not in self._columns or path in self._pack_paths:
        raise UserError(f"replay update: '{path}' is not an unpacked column of this replay; update latent columns only")
    cs, written = self._chunk_size, 0
    with self._write_lock:
      state = self._state
      with self._lock:
        start_limit, end = state.start, state.end
        chunks = dict(state.chunks)
      with self._raw_lock:
        for i, key in enumerate(ids):
          stream, t0 = int(key >> 40), int(key & ((1 << 40) - 1)) + offset
          length = len(next(iter(values.values()))[i])
          if t0 < start_limit or t0 + length > end:
            continue
          t = 0
          while t < length:
            index, lo = divmod(t0 + t, cs)
            n = min(cs - lo, length - t)
            for path, value in values.items():
              chunks[index].raw[path][stream, lo : lo + n] = value[i, t : t + n]
            state.dirty.add(index)
            t += n
          written += 1
    return written

  # Sampling.

  def sample(self, batch_size: int, length: int, wait_s: float = 0.0) -> dict:
    """Samples ``batch_size`` windows of ``length`` consecutive steps, uniform over all windows.

    Args:
      batch_size: Number of windows.
      length: Steps per window.
      wait_s: How long to wait for enough data (``length`` steps per stream) before failing.

    Returns:
      A nested dict of numpy arrays ``[batch_size, length, ...]`` in the step format, with
      ``is_first[:, 0]`` True.

    Raises:
      ValueError: Fewer than ``length`` steps per stream arrived within ``wait_s`` seconds.
    """
    flat, _ = self._sample_flat(batch_size, length, wait_s)
    return unflatten(flat)

  def _sample_flat(self, batch_size: int, length: int, wait_s: float = 0.0):
    with self._lock:
      deadline = time.monotonic() + wait_s
      while self._state.end - self._state.start < length:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
          raise ValueError(
            f"replay holds {self._state.end - self._state.start} steps per stream, fewer than the "
            f"sequence length {length}: collect more steps before sampling"
          )
        self._data_ready.wait(remaining)
      state = self._state
      streams = self._rng.integers(self._num_streams, size=batch_size)
      starts = self._rng.integers(state.start, state.end - length + 1, size=batch_size)
      if length == self._online_length:
        for i in range(min(batch_size, len(state.queue))):
          streams[i], starts[i] = state.queue.popleft()
      first = state.start // self._chunk_size
      last = (state.end - 1) // self._chunk_size
      chunks = {i: state.chunks[i] for i in range(first, last + 1)}
      num_windows = self._num_streams * (state.end - state.start - length + 1)
    flat = self._gather(chunks, streams, starts, length)
    if "is_first" in flat:
      flat["is_first"][:, 0] = True
    ids = streams.astype(np.int64) << 40 | starts.astype(np.int64)
    return flat, BufferInfo(ids, np.full(batch_size, 1.0 / num_windows, np.float32))

  def _gather(self, chunks: dict, streams, starts, length: int) -> dict:
    """Copies the windows ``[start, start + length)`` of the given streams out of ``chunks``."""
    cs, bs = self._chunk_size, self._block_size
    out = {
      path: np.empty((len(streams), length, *spec.shape.as_list()), spec.dtype.as_numpy_dtype)
      for path, spec in self._columns.items()
    }
    parts = lambda start: _parts(int(start), length, cs)
    with self._raw_lock:  # Whole windows of unpacked columns at once: an update is never seen half-written.
      for i, (stream, start) in enumerate(zip(streams, starts)):
        for t, index, lo, n in parts(start):
          for path, array in chunks[index].raw.items():
            out[path][i, t : t + n] = array[stream, lo : lo + n]
    for i, (stream, start) in enumerate(zip(streams, starts)):
      for t, index, lo, n in parts(start):
        chunk = chunks[index]
        for path, columns in chunk.packed.items():
          column = columns[stream]
          shape = tuple(self._columns[path].shape.as_list())
          for b in range(lo // bs, (lo + n - 1) // bs + 1):
            key = (chunk.serial, path, int(stream), b)
            block = self._cache.get(key)
            if block is None:
              block = column.block(b, shape)
              self._cache.put(key, block)
            a, z = max(lo, b * bs), min(lo + n, (b + 1) * bs)
            out[path][i, t + a - lo : t + z - lo] = block[a - b * bs : z - b * bs]
    return out

  def _get_next(self, sample_batch_size=None, num_steps=None, time_stacked=True):
    if not time_stacked:
      raise NotImplementedError("SequenceReplayBuffer only returns time-stacked windows")
    flat, info = self._sample_flat(sample_batch_size or 1, num_steps or 1)
    flat = {k: _squeeze(v, sample_batch_size is None, num_steps is None) for k, v in flat.items()}
    items = tf.nest.map_structure(tf.convert_to_tensor, unflatten(flat))
    info = BufferInfo(*(_squeeze(x, sample_batch_size is None, False) for x in info))
    return items, BufferInfo(tf.convert_to_tensor(info.ids), tf.convert_to_tensor(info.probabilities))

  def as_dataset(
    self,
    sample_batch_size=None,
    num_steps=None,
    num_parallel_calls=None,
    sequence_preprocess_fn=None,
    single_deterministic_pass=False,
    prefetch: int = 2,
    wait_s: float = 600.0,
    with_ids: bool = False,
  ) -> tf.data.Dataset:
    """An endless dataset of sampled windows: nested dicts ``[B, T, ...]`` with static shapes.

    Unlike other TF-Agents buffers, elements are the step dicts alone (no ``BufferInfo``), ready
    for ``DreamerAgent.train``. Sampling runs in ``tf.numpy_function`` under the buffer's lock, so
    the dataset keeps working while steps are being added; each element sees the data present
    when it was sampled.

    Args:
      sample_batch_size: B (None: no batch axis).
      num_steps: T (None: no time axis).
      num_parallel_calls: Parallel sampling calls (None: 1). zlib releases the GIL, so 2 helps
        when a core is free.
      sequence_preprocess_fn: Optional function applied to each element.
      single_deterministic_pass: Not supported (must be False).
      prefetch: Elements prepared ahead of the consumer.
      wait_s: How long one sampling call waits for the first T steps per stream before failing.
      with_ids: Add ``"replay_id"``: each window's id (``[B]`` int64, ``BufferInfo.ids``), for
        :meth:`update` (the replay context's write-back of the latents an update computed).

    Returns:
      A ``tf.data.Dataset``.
    """
    if single_deterministic_pass:
      raise NotImplementedError(_NO_SINGLE_PASS)
    ds = self._as_dataset(sample_batch_size, num_steps, sequence_preprocess_fn, num_parallel_calls, wait_s, with_ids)
    return fixed_pipeline(ds.prefetch(prefetch))

  def _as_dataset(
    self, sample_batch_size, num_steps, sequence_preprocess_fn, num_parallel_calls, wait_s=600.0, with_ids=False
  ):
    paths = list(self._columns)
    specs = [self._columns[p] for p in paths]
    b, t = sample_batch_size or 1, num_steps or 1
    outer = [d for d in (sample_batch_size, num_steps) if d is not None]
    dtypes = [s.dtype for s in specs] + ([tf.int64] if with_ids else [])

    def sample(_):
      flat, info = self._sample_flat(b, t, wait_s)
      values = [_squeeze(flat[p], sample_batch_size is None, num_steps is None) for p in paths]
      if with_ids:
        values.append(info.ids if sample_batch_size is not None else info.ids[0])
      return values

    def to_element(dummy):
      values = tf.numpy_function(sample, [dummy], dtypes, stateful=True)
      flat = {}
      for path, spec, value in zip(paths, specs, values):
        value.set_shape([*outer, *spec.shape.as_list()])
        flat[path] = value
      if with_ids:
        values[-1].set_shape(outer[:1] if sample_batch_size is not None else [])
        flat[REPLAY_ID_KEY] = values[-1]
      element = unflatten(flat)
      return sequence_preprocess_fn(element) if sequence_preprocess_fn else element

    return tf.data.Dataset.from_tensors(np.int64(0)).repeat().map(to_element, num_parallel_calls or 1)

  def _single_deterministic_pass_dataset(self, *args, **kwargs):
    raise NotImplementedError(_NO_SINGLE_PASS)

  def _gather_all(self):
    """All stored steps as tensors ``[num_streams, stream_length, ...]`` (large: use for tests/debugging)."""
    with self._lock:
      state = self._state
      chunks = dict(state.chunks)
      start, length = state.start, state.end - state.start
    streams = np.arange(self._num_streams)
    flat = self._gather(chunks, streams, np.full(self._num_streams, start), length)
    return tf.nest.map_structure(tf.convert_to_tensor, unflatten(flat))

  def _num_frames(self):
    return self.size

  def _clear(self):
    with self._write_lock, self._lock:
      self._state = _State()
      self._cache.clear()

  # Checkpointing.

  def save(self, directory) -> dict:
    """Writes a checkpoint incrementally and crash-safely (see :mod:`dreamer_tf.replay.checkpoint`).

    Full chunks already in ``directory`` are not written again; the open chunk and the manifest
    are written last, each atomically; files of evicted data are deleted after the manifest.

    Args:
      directory: The checkpoint directory (created if needed).

    Returns:
      ``{"files_written": [...], "bytes_written": int, "files_removed": [...]}``.
    """
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written, nbytes = [], 0
    with self._write_lock:  # No step is added while saving; sampling goes on.
      with self._lock:
        state = self._state
        chunks = dict(state.chunks)
        start, end, lineage, added = state.start, state.end, state.lineage, state.added
        rng_state = self._rng.bit_generator.state
        queue = list(state.queue)
        dirty = set(state.dirty)
      open_index, open_length = divmod(end, self._chunk_size)
      entries = []
      for index in sorted(chunks):
        chunk = chunks[index]
        if index == open_index:
          if open_length == 0:
            continue
          name = checkpoint.open_name(lineage, index, open_length)
          chunk = chunk.packed_copy(self._pack_paths, self._block_size, self._level, open_length)
          length = open_length
        else:
          if index in dirty:  # Updated since saved: a new file, so the old manifest stays valid until replaced.
            state.revisions[index] = state.revisions.get(index, 0) + 1
          name = checkpoint.chunk_name(lineage, index, state.revisions.get(index, 0))
          length = self._chunk_size
        path = directory / name
        if path.exists():
          size = path.stat().st_size
        else:
          size = checkpoint.write_chunk(path, chunk, length)
          written.append(name)
          nbytes += size
        entry = {"index": index, "file": name, "bytes": size, "length": length}
        if state.revisions.get(index) and index != open_index:
          entry["revision"] = state.revisions[index]
        entries.append(entry)
      manifest = {
        "format_version": checkpoint.FORMAT_VERSION,
        "spec": spec_signature(self._spec),
        "num_streams": self._num_streams,
        "chunk_size": self._chunk_size,
        "block_size": self._block_size,
        "capacity": int(self._capacity),
        "start": start,
        "end": end,
        "added": added,
        "lineage": lineage,
        "chunks": entries,
        "rng_state": rng_state,
        "saved_at": time.time(),
      }
      if self._online_length:
        manifest["online_queue"] = [[int(a), int(b)] for a, b in queue]
      checkpoint.write_manifest(directory, manifest)
      with self._lock:
        state.dirty -= dirty
        state.revisions = {i: r for i, r in state.revisions.items() if i in state.chunks}
      removed = checkpoint.remove_stale(directory, {e["file"] for e in entries})
    return {"files_written": written, "bytes_written": nbytes, "files_removed": removed}

  def restore(self, directory) -> None:
    """Replaces the contents with the checkpoint in ``directory``.

    Raises:
      UserError: No checkpoint, a corrupt manifest or chunk file (named), or data of another
        spec or number of streams than this buffer's.
    """
    directory = pathlib.Path(directory)
    manifest = checkpoint.read_manifest(directory)
    mine = spec_signature(self._spec)
    theirs = manifest.get("spec", {})
    if theirs != mine:
      diff = sorted(set(mine) ^ set(theirs)) or [k for k in mine if mine[k] != theirs[k]]
      key = diff[0]
      raise UserError(
        f"replay checkpoint in {directory} was saved with another step spec ('{key}': checkpoint "
        f"{theirs.get(key, 'absent')}, this run {mine.get(key, 'absent')}): use the same environment "
        "and config as the run that saved it, or start with an empty replay directory"
      )
    if manifest["num_streams"] != self._num_streams:
      raise UserError(
        f"replay checkpoint in {directory} has {manifest['num_streams']} streams but this run uses "
        f"{self._num_streams} environments: set run.envs={manifest['num_streams']} or start with an "
        "empty replay directory"
      )
    chunk_size, block_size = manifest["chunk_size"], manifest["block_size"]
    state = _State()
    state.start, state.end = manifest["start"], manifest["end"]
    state.added, state.lineage = manifest["added"], manifest["lineage"]
    if self._online_length:
      state.queue.extend(tuple(item) for item in manifest.get("online_queue", []))
    for entry in manifest["chunks"]:
      chunk, length = checkpoint.read_chunk(
        directory / entry["file"], entry["index"], self._columns, self._num_streams, entry["bytes"]
      )
      if length != entry["length"]:
        raise UserError(
          f"replay checkpoint file {directory / entry['file']} holds {length} steps, "
          f"manifest says {entry['length']}: delete the replay checkpoint directory"
        )
      if length < chunk_size:  # The open chunk: unpack into full-size arrays to continue filling it.
        open_chunk = Chunk.empty(entry["index"], self._columns, self._num_streams, chunk_size)
        part = self._gather_chunk(chunk, length, block_size)
        for path, array in part.items():
          open_chunk.raw[path][:, :length] = array
        chunk = open_chunk
      state.chunks[entry["index"]] = chunk
      if entry.get("revision"):
        state.revisions[entry["index"]] = entry["revision"]
    with self._write_lock, self._lock:
      self._chunk_size, self._block_size = chunk_size, block_size
      self._state = state
      self._cache.clear()
      self._rng.bit_generator.state = manifest["rng_state"]
      self._evict_locked()
      self._data_ready.notify_all()

  def _gather_chunk(self, chunk: Chunk, length: int, block_size: int) -> dict:
    out = {path: array[:, :length] for path, array in chunk.raw.items()}
    for path, columns in chunk.packed.items():
      shape = tuple(self._columns[path].shape.as_list())
      nblocks = -(-length // block_size)
      out[path] = np.stack([np.concatenate([c.block(b, shape) for b in range(nblocks)]) for c in columns])
    return out


def _parts(start: int, length: int, chunk_size: int):
  """``(t, chunk index, row, n)`` for the pieces of the window ``[start, start + length)`` in each chunk."""
  t = 0
  while t < length:
    index, lo = divmod(start + t, chunk_size)
    n = min(chunk_size - lo, length - t)
    yield t, index, lo, n
    t += n


def _squeeze(array: np.ndarray, batch: bool, time_axis: bool) -> np.ndarray:
  if time_axis:
    array = array[:, 0]
  if batch:
    array = array[0]
  return array


def checkpoint_exists(directory) -> bool:
  """Whether ``directory`` holds a replay checkpoint manifest."""
  return os.path.exists(os.path.join(directory, checkpoint.MANIFEST))
