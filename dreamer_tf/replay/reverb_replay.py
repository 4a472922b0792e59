"""Reverb replay for distributed actors: tables, server, step observer, dataset and weights.

Data flow with ``--replay=reverb`` (docs/reverb.md)::

  actor process (python -m dreamer_tf.actor), one per machine or core:
    envs --(PyDriver + collect policy)--> ReverbStepObserver --TrajectoryWriter--> table DATA_TABLE
    every N steps: VariableContainer.update(policy variables)  <-- table VARIABLE_TABLE
  learner (Trainer):
    ReverbReplay.start_server(config, data_spec, variable_spec=...)   (or --reverb_address)
    ReverbReplay.as_dataset(address, DATA_TABLE, B, T, data_spec) --> DreamerAgent.train
    every K updates: VariableContainer.push(policy_variables(agent), version=updates)

Each item of the data table is one window of ``batch_length`` consecutive steps of one
environment stream in the step format of docs/CONTRIBUTING.md, plus an ``info`` column
(``actor_id``, ``policy_version``) that :meth:`ReverbReplay.as_dataset` strips unless asked.
Windows cross episode boundaries like the local :class:`SequenceReplayBuffer`'s, so episodes
shorter than ``batch_length`` are kept (the stock TF-Agents observer drops them); ``is_first``
is forced on the first step of every sampled window.

The train ratio (replayed steps per agent step, DreamerV3 hyperparameter table) is enforced by a
``reverb.rate_limiters.SampleToInsertRatio``. A stream creates one item every ``stride`` steps
(once it has ``batch_length`` steps), so per agent step there are ``1 / stride`` inserts and
``train_ratio / batch_length`` sampled windows, which gives::

  samples_per_insert = train_ratio * stride / batch_length

e.g. 512 * 32 / 64 = 256 for the paper's Atari settings with stride 32. Actors block when they
run ahead of the learner by more than ``error_buffer`` samples' worth of items, and the learner
blocks when it runs ahead of the actors, so the achieved ratio stays within
``error_buffer / samples_per_insert`` items of the target.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import pathlib
import time
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from dreamer_tf.errors import MissingDependencyError, UserError
from dreamer_tf.replay.dataset_options import fixed_pipeline
from dreamer_tf.replay.observer import DreamerStepObserver
from dreamer_tf.replay.spec import plain_spec

try:
  import reverb
  import tree
except ImportError:  # pragma: no cover - reverb ships with the [reverb] extra of tf-agents.
  reverb = None
  tree = None

_log = logging.getLogger(__name__)

DATA_TABLE = "dreamer_replay"
VARIABLE_TABLE = "dreamer_variables"
INFO_KEY = "info"


def _require_reverb():
  if reverb is None:
    raise MissingDependencyError("dm-reverb", "--replay=reverb", extra="reverb")


def default_stride(batch_length: int) -> int:
  """The default item stride: half a window, so each step appears in two windows."""
  return max(1, batch_length // 2)


def info_spec() -> dict:
  """Spec of the per-step ``info`` column written by the actors (stripped before training)."""
  return {
    "actor_id": tf.TensorSpec((), tf.int32, name="actor_id"),
    "policy_version": tf.TensorSpec((), tf.int64, name="policy_version"),
  }


def table_spec(data_spec: Mapping, batch_length: int) -> dict:
  """The data table's signature: the step spec plus ``info``, with a leading time axis ``[T, ...]``."""
  spec = dict(plain_spec(data_spec))
  spec[INFO_KEY] = info_spec()
  return tf.nest.map_structure(lambda s: tf.TensorSpec((batch_length, *s.shape.as_list()), s.dtype, s.name), spec)


@dataclasses.dataclass(frozen=True)
class ReverbSettings:
  """Table sizes and rate-limiter values derived from the config (see the module docstring).

  Attributes:
    batch_size: Windows per training batch (``replay.batch_size``).
    batch_length: Steps per window (``replay.batch_length``).
    stride: Steps between the starts of consecutive windows of one stream.
    max_size: Items kept (``replay.capacity // stride``: about ``replay.capacity`` steps).
    samples_per_insert: ``train_ratio * stride / batch_length``.
    min_size_to_sample: Items before the first sample: ``ceil(run.train_start / stride)``, at
      least ``batch_size``.
    error_buffer: Allowed deviation in samples: ``max(1, samples_per_insert) * slack_items``
      with ``slack_items = max(batch_size, ceil(min_size_to_sample / 10))``.
  """

  batch_size: int
  batch_length: int
  stride: int
  max_size: int
  samples_per_insert: float
  min_size_to_sample: int
  error_buffer: float

  @classmethod
  def from_config(cls, config, stride: int | None = None) -> ReverbSettings:
    replay = config.replay
    batch_length = int(replay.batch_length)
    stride = int(stride or replay.get("reverb_stride", 0) or default_stride(batch_length))
    if not 1 <= stride <= batch_length:
      raise UserError(
        f"the Reverb item stride must lie in [1, replay.batch_length={batch_length}], got {stride}: "
        "pass a stride such as batch_length // 2"
      )
    spi = float(config.run.train_ratio) * stride / batch_length
    min_size = max(int(replay.batch_size), math.ceil(int(config.run.train_start) / stride), 1)
    max_size = max(int(replay.capacity) // stride, min_size + 1)
    slack_items = max(int(replay.batch_size), math.ceil(min_size / 10))
    return cls(
      batch_size=int(replay.batch_size),
      batch_length=batch_length,
      stride=stride,
      max_size=max_size,
      samples_per_insert=spi,
      min_size_to_sample=min_size,
      error_buffer=max(1.0, spi) * slack_items,
    )

  def rate_limiter(self):
    _require_reverb()
    return reverb.rate_limiters.SampleToInsertRatio(
      samples_per_insert=self.samples_per_insert,
      min_size_to_sample=self.min_size_to_sample,
      error_buffer=self.error_buffer,
    )


class ReverbReplay:
  """Builds the Reverb tables and server of a run, and reads them as a training dataset.

  All methods are static: the server and its address are what the learner keeps. Typical use::

    server, address = ReverbReplay.start_server(config, data_spec, variable_spec=variable_spec(agent),
                                                checkpoint_dir=logdir / "reverb")
    dataset = ReverbReplay.as_dataset(address, DATA_TABLE, B, T, data_spec)
    ReverbReplay.checkpoint(address)   # with the agent checkpoint
  """

  @staticmethod
  def make_tables(
    config,
    data_spec: Mapping,
    variable_spec: Mapping | None = None,
    *,
    stride: int | None = None,
    table: str = DATA_TABLE,
    variable_table: str = VARIABLE_TABLE,
  ) -> list:
    """The data table (uniform sampling, FIFO removal, train-ratio limiter) and the variable table.

    Args:
      config: The resolved config (``replay`` and ``run`` sections).
      data_spec: The step spec (:func:`dreamer_tf.replay.step_spec`).
      variable_spec: The variable container's signature (:func:`variable_spec`); None creates the
        variable table without a signature.
      stride: Item stride (default ``replay.reverb_stride`` if set, else ``batch_length // 2``).
      table: Name of the data table.
      variable_table: Name of the variable table (max size 1: only the latest weights).

    Returns:
      ``[data_table, variable_table]``.
    """
    _require_reverb()
    settings = ReverbSettings.from_config(config, stride)
    data = reverb.Table(
      name=table,
      sampler=reverb.selectors.Uniform(),
      remover=reverb.selectors.Fifo(),
      max_size=settings.max_size,
      rate_limiter=settings.rate_limiter(),
      signature=table_spec(data_spec, settings.batch_length),
    )
    variables = reverb.Table(
      name=variable_table,
      sampler=reverb.selectors.Uniform(),
      remover=reverb.selectors.Fifo(),
      max_size=1,
      max_times_sampled=0,
      rate_limiter=reverb.rate_limiters.MinSize(1),
      signature=None if variable_spec is None else plain_spec(variable_spec),
    )
    return [data, variables]

  @staticmethod
  def start_server(
    config,
    data_spec: Mapping,
    port: int | None = None,
    *,
    variable_spec: Mapping | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    stride: int | None = None,
  ):
    """Starts a Reverb server with the run's tables, restoring them from ``checkpoint_dir``.

    Args:
      config: The resolved config.
      data_spec: The step spec.
      port: The port (None: a free one).
      variable_spec: See :meth:`make_tables`.
      checkpoint_dir: Directory of a ``reverb.checkpointers.DefaultCheckpointer`` (e.g.
        ``<logdir>/reverb``): the latest checkpoint in it is loaded, so a restarted learner gets
        its tables back; :meth:`checkpoint` writes a new one. None uses a temporary directory.
      stride: See :meth:`make_tables`.

    Returns:
      ``(server, address)`` with ``address`` as ``localhost:PORT``.
    """
    _require_reverb()
    tables = ReverbReplay.make_tables(config, data_spec, variable_spec, stride=stride)
    checkpointer = None
    if checkpoint_dir is not None:
      checkpoint_dir = pathlib.Path(checkpoint_dir)
      checkpoint_dir.mkdir(parents=True, exist_ok=True)
      checkpointer = reverb.checkpointers.DefaultCheckpointer(str(checkpoint_dir))
    try:
      server = reverb.Server(tables=tables, port=port, checkpointer=checkpointer)
    except RuntimeError as e:
      raise UserError(f"cannot start the Reverb server on port {port}: {e}; choose a free port") from None
    address = f"localhost:{server.port}"
    _log.info("Reverb server on %s (checkpoints in %s)", address, checkpoint_dir or "a temporary directory")
    return server, address

  @staticmethod
  def wait_for_server(address: str, timeout_s: float = 60.0, tables=(DATA_TABLE,)) -> dict:
    """Waits until the server at ``address`` answers and has ``tables``; returns its table info.

    Raises:
      UserError: No answer within ``timeout_s`` or a missing table.
    """
    _require_reverb()
    deadline = time.monotonic() + timeout_s
    delay = 0.2
    while True:
      try:
        info = reverb.Client(address).server_info(timeout=max(1, int(min(10.0, timeout_s))))
        break
      except Exception as e:  # Unavailable / deadline errors surface as several types.
        if time.monotonic() + delay > deadline:
          raise UserError(
            f"no Reverb server answered at {address} within {timeout_s:.0f} s ({type(e).__name__}): "
            "start the learner with --replay=reverb or fix --reverb_address"
          ) from None
        time.sleep(delay)
        delay = min(5.0, delay * 2)
    missing = [t for t in tables if t not in info]
    if missing:
      raise UserError(
        f"the Reverb server at {address} has no table {missing[0]} (tables: {sorted(info)}): point "
        "--reverb_address at a dreamer_tf learner's server"
      )
    return info

  @staticmethod
  def checkpoint(address: str) -> str:
    """Writes a checkpoint of all tables through the server's checkpointer; returns its path."""
    _require_reverb()
    return reverb.Client(address).checkpoint()

  @staticmethod
  def as_dataset(
    address: str,
    table: str,
    batch_size: int,
    batch_length: int,
    data_spec: Mapping,
    *,
    with_info: bool = False,
    rate_limiter_timeout_ms: int = -1,
    max_in_flight_samples_per_worker: int | None = None,
    num_workers_per_iterator: int = -1,
    prefetch: int = 2,
  ) -> tf.data.Dataset:
    """An endless dataset of windows ``[B, T, ...]`` with the local replay's element spec.

    Sampling goes through the table's rate limiter, so the dataset waits while the learner is
    ahead of the train ratio. ``is_first[:, 0]`` is set on every element.

    Args:
      address: ``HOST:PORT`` of the server.
      table: The data table.
      batch_size: B.
      batch_length: T (must match the stored windows).
      data_spec: The step spec.
      with_info: Also return the ``info`` dict (``actor_id``, ``policy_version``, each ``[B, T]``)
        as ``(step, info)`` elements.
      rate_limiter_timeout_ms: How long a sample waits on the rate limiter before the dataset
        ends (-1: forever).
      max_in_flight_samples_per_worker: Samples requested ahead (default ``2 * batch_size``).
      num_workers_per_iterator: Sampling workers (-1: automatic).
      prefetch: Batches prepared ahead of the consumer.

    Returns:
      A ``tf.data.Dataset`` of step dicts (or ``(step, info)`` pairs).
    """
    _require_reverb()
    spec = table_spec(data_spec, batch_length)
    dataset = reverb.TrajectoryDataset(
      server_address=address,
      table=table,
      dtypes=tf.nest.map_structure(lambda s: s.dtype, spec),
      shapes=tf.nest.map_structure(lambda s: s.shape, spec),
      max_in_flight_samples_per_worker=max_in_flight_samples_per_worker or 2 * batch_size,
      num_workers_per_iterator=num_workers_per_iterator,
      rate_limiter_timeout_ms=rate_limiter_timeout_ms,
    )

    def to_step(sample):
      data = dict(sample.data)
      info = data.pop(INFO_KEY)
      first = data["is_first"]
      data["is_first"] = tf.concat([tf.ones_like(first[:, :1]), first[:, 1:]], axis=1)
      return (data, info) if with_info else data

    dataset = dataset.batch(batch_size, drop_remainder=True).map(to_step)
    return fixed_pipeline(dataset.prefetch(prefetch))


def inserts_allowed(table_info) -> bool:
  """Whether the table's rate limiter would accept one more insert now (from ``server_info()``)."""
  limiter = table_info.rate_limiter_info
  if table_info.current_size < limiter.min_size_to_sample:
    return True
  error = (limiter.insert_stats.completed + 1) * limiter.samples_per_insert - limiter.sample_stats.completed
  return error <= limiter.max_diff


class _ReverbSink:
  """A buffer-like object (``data_spec``, ``add_batch``) that writes each stream to Reverb.

  After each item it waits until at most ``max_in_flight_items`` items of the stream are
  unconfirmed, so a rate limiter that holds inserts back also holds the actor back (and pending
  items cannot pile up). A wait longer than ``flush_timeout_s`` probes the server: if it does not
  answer, or its rate limiter would accept inserts (a writer left over from a restarted server),
  the sink marks itself ``disconnected`` and drops steps until :meth:`connect` is called.
  """

  def __init__(self, client, table, batch_length, stride, num_envs, data_spec, actor_id, flush_timeout_s):
    self.data_spec = plain_spec(data_spec)
    self._table = table
    self._batch_length = batch_length
    self._stride = stride
    self._num_envs = num_envs
    self._max_in_flight = 2 * -(-batch_length // stride) + 2
    self._flush_timeout_ms = max(1, int(flush_timeout_s * 1000))
    self.actor_id = int(actor_id)
    self.policy_version = 0
    self.items_created = 0
    self.steps_added = 0
    self.steps_dropped = 0
    self.disconnected = None
    self.abort = None
    self._writers = []
    self.connect(client)

  def connect(self, client) -> None:
    """(Re)creates one TrajectoryWriter per stream; windows restart from empty histories."""
    self.close()
    self._client = client
    self._writers = [client.trajectory_writer(num_keep_alive_refs=self._batch_length) for _ in range(self._num_envs)]
    self._counts = np.zeros(self._num_envs, np.int64)
    self.disconnected = None

  def add_batch(self, step) -> None:
    num_envs = len(np.asarray(step["reward"]))
    if num_envs != self._num_envs:
      raise UserError(
        f"ReverbStepObserver was created for {self._num_envs} environments but got a batch of {num_envs}: "
        "pass num_envs=env.batch_size"
      )
    if self.disconnected is not None:
      self.steps_dropped += num_envs
      return
    info = {"actor_id": np.int32(self.actor_id), "policy_version": np.int64(self.policy_version)}
    T = self._batch_length
    for i, writer in enumerate(self._writers):
      row = tf.nest.map_structure(lambda x, i=i: np.asarray(x[i]), step)
      row[INFO_KEY] = info
      writer.append(row)
      self._counts[i] += 1
      n = int(self._counts[i])
      if n >= T and (n - T) % self._stride == 0:
        writer.create_item(self._table, 1.0, tree.map_structure(lambda column: column[-T:], writer.history))
        self.items_created += 1
        if not self._wait(writer):
          return
    self.steps_added += num_envs

  def _wait(self, writer) -> bool:
    """Waits until the writer's unconfirmed items are few; False when the server is gone."""
    waited = 0.0
    while True:
      try:
        writer.flush(block_until_num_items=self._max_in_flight, timeout_ms=self._flush_timeout_ms)
        return True
      except reverb.errors.DeadlineExceededError:
        waited += self._flush_timeout_ms / 1000
      if self.abort is not None and self.abort():
        return False
      try:
        table_info = self._client.server_info(timeout=5)[self._table]
        stuck = inserts_allowed(table_info)
      except Exception as e:  # No answer: the server is down or unreachable.
        self.disconnected = e
        _log.warning("Reverb server unreachable (%s); dropping steps until reconnected", type(e).__name__)
        return False
      if stuck:
        self.disconnected = RuntimeError("the writer's items are not confirmed although the table accepts inserts")
        _log.warning("Reverb writer stalled while the table accepts inserts (server restarted?); reconnecting")
        return False
      if waited <= self._flush_timeout_ms / 1000 or waited % 60 < self._flush_timeout_ms / 1000:
        _log.info("Waited %.0f s for the learner: the rate limiter holds inserts back (train ratio)", waited)

  def flush(self, timeout_ms: int | None = None) -> None:
    for writer in self._writers:
      writer.flush(timeout_ms=timeout_ms)

  def close(self) -> None:
    for writer in self._writers:
      try:
        writer.close()
      except Exception:  # The server may be gone; the writer is dropped either way.
        pass
    self._writers = []


class ReverbStepObserver(DreamerStepObserver):
  """A PyDriver observer that writes overlapping windows of steps to a Reverb table.

  The conversion from driver trajectories to the step format is
  :class:`DreamerStepObserver`'s; each environment stream then appends its steps to its own
  ``reverb.TrajectoryWriter`` and creates an item for every new window of ``batch_length``
  consecutive steps, one every ``stride`` steps, regardless of episode boundaries (episodes of
  any length are kept; ``is_first`` marks the boundaries inside a window). Every step also carries
  ``info = {actor_id, policy_version}`` so the learner can attribute and age its data.

  Use as ``PyDriver(env, policy, observers=[ReverbStepObserver(address, DATA_TABLE, T, T // 2,
  env.batch_size)])``; set ``observer.policy_version`` after pulling new weights, call
  ``flush()`` to push pending items. When the server goes away the observer drops steps and
  sets ``disconnected`` (the driver keeps running); call ``reconnect()`` once it is back.

  Args:
    client: A ``reverb.Client`` or a ``HOST:PORT`` address.
    table: The data table.
    batch_length: Steps per item (the table's window length).
    stride: Steps between the starts of consecutive items of one stream.
    num_envs: Streams (the batch size of the environment; 1 for an unbatched one).
    data_spec: The step spec; None reads it from the table's signature.
    actor_id: Written into every step's ``info``.
    flush_timeout_s: How long to wait for the server to confirm items before checking whether it
      is still there (a wait caused by the rate limiter goes on; a lost server sets
      ``disconnected``).
  """

  def __init__(self, client, table, batch_length, stride, num_envs, data_spec=None, actor_id=0, flush_timeout_s=10.0):
    _require_reverb()
    if isinstance(client, str):
      client = reverb.Client(client)
    if not 1 <= stride <= batch_length:
      raise UserError(f"ReverbStepObserver stride must lie in [1, batch_length={batch_length}], got {stride}")
    if data_spec is None:
      signature = client.server_info()[table].signature
      if signature is None:
        raise UserError(f"Reverb table {table} has no signature: pass data_spec= to ReverbStepObserver")
      signature = dict(signature)
      signature.pop(INFO_KEY, None)
      data_spec = tf.nest.map_structure(lambda s: tf.TensorSpec(s.shape[1:], s.dtype, s.name), signature)
    self._sink = _ReverbSink(client, table, batch_length, stride, num_envs, data_spec, actor_id, flush_timeout_s)
    super().__init__(self._sink)

  @property
  def policy_version(self) -> int:
    return self._sink.policy_version

  @policy_version.setter
  def policy_version(self, version: int) -> None:
    self._sink.policy_version = int(version)

  @property
  def items_created(self) -> int:
    return self._sink.items_created

  @property
  def steps_added(self) -> int:
    return self._sink.steps_added

  @property
  def steps_dropped(self) -> int:
    """Steps dropped while disconnected."""
    return self._sink.steps_dropped

  @property
  def abort(self):
    """Optional callable; when it returns True, a wait on the rate limiter gives up (the step is dropped)."""
    return self._sink.abort

  @abort.setter
  def abort(self, fn) -> None:
    self._sink.abort = fn

  @property
  def disconnected(self):
    """None while connected; the error that showed the server lost otherwise (see ``reconnect``)."""
    return self._sink.disconnected

  def flush(self, timeout_ms: int | None = None) -> None:
    """Sends pending items and waits for the server to confirm them."""
    self._sink.flush(timeout_ms)

  def reconnect(self, client) -> None:
    """Switches to a new client (e.g. after a server restart); call ``reset()`` with the envs."""
    if isinstance(client, str):
      client = reverb.Client(client)
    self._sink.connect(client)

  def close(self) -> None:
    self._sink.close()


def policy_variables(agent) -> dict:
  """The variables the acting policy reads: encoder, RSSM and actor, by stable names.

  Names are ``<module>_<index>`` in the modules' variable order, identical for every agent built
  from the same config, so a learner's values can be assigned to an actor's variables. The policy's
  random state, the decoder, heads and critics stay where they are.
  """
  wm, ac = agent.world_model, agent.actor_critic
  out = {}
  for group, module in (("encoder", wm.encoder), ("rssm", wm.rssm), ("actor", ac.actor)):
    for i, variable in enumerate(module.variables):
      out[f"{group}_{i:04d}"] = variable
  return out


def variable_spec(variables: Mapping) -> dict:
  """The variable table's signature for a dict of variables (see :class:`VariableContainer`)."""
  return {
    "version": tf.TensorSpec((), tf.int64, name="version"),
    "variables": {k: tf.TensorSpec(v.shape, v.dtype, name=k) for k, v in variables.items()},
  }


class VariableContainer:
  """The latest policy weights in a Reverb table of size 1, after TF-Agents' ReverbVariableContainer.

  The learner pushes ``{"version": int64, "variables": {name: value}}``; actors pull the item
  (sampling never consumes it) and assign the values to their own variables.

  Args:
    address: ``HOST:PORT`` of the server (or a ``reverb.Client``).
    table: The variable table (created by :meth:`ReverbReplay.make_tables`).
  """

  def __init__(self, address, table: str = VARIABLE_TABLE):
    _require_reverb()
    self._client = reverb.Client(address) if isinstance(address, str) else address
    self._table = table
    self._writer = None

  def push(self, variables: Mapping, version: int) -> None:
    """Replaces the stored weights with ``variables`` (a dict of variables or arrays)."""
    values = {k: np.asarray(v.numpy() if hasattr(v, "numpy") else v) for k, v in variables.items()}
    if self._writer is None:
      self._writer = self._client.trajectory_writer(num_keep_alive_refs=1)
    try:
      self._writer.append({"version": np.int64(version), "variables": values})
      self._writer.create_item(self._table, 1.0, tree.map_structure(lambda column: column[-1], self._writer.history))
      self._writer.flush()
    except Exception:
      self._writer = None  # A broken connection: the next push starts a new writer.
      raise

  def size(self) -> int:
    return int(self._client.server_info()[self._table].current_size)

  def wait(self, timeout_s: float) -> None:
    """Waits up to ``timeout_s`` for the first push.

    Raises:
      UserError: Nothing was pushed in time.
    """
    deadline = time.monotonic() + timeout_s
    while self.size() < 1:
      if time.monotonic() > deadline:
        raise UserError(
          f"no policy weights arrived in Reverb table {self._table} within {timeout_s:.0f} s: start the "
          "learner first, or raise --wait_for_weights_secs"
        )
      time.sleep(0.2)

  def pull(self, timeout_s: float | None = None, structure: Mapping | None = None) -> tuple[int, dict]:
    """Returns ``(version, values)`` of the stored weights.

    Args:
      timeout_s: Wait up to this long for the first push (None: do not wait; an empty table
        then blocks until a push).
      structure: The variables dict, used to unpack a table without a signature.
    """
    if timeout_s is not None:
      self.wait(timeout_s)
    sample = next(self._client.sample(self._table, 1, emit_timesteps=False, unpack_as_table_signature=True))
    data = sample.data
    if not isinstance(data, Mapping):  # No signature: columns in tree.flatten order.
      if structure is None:
        raise UserError(f"Reverb table {self._table} has no signature: pass structure= to pull()")
      data = tree.unflatten_as({"version": 0, "variables": dict(structure)}, list(data))
    return int(data["version"]), dict(data["variables"])

  def update(self, variables: Mapping, timeout_s: float | None = None) -> int:
    """Assigns the stored weights to ``variables`` (same names and shapes); returns their version.

    Raises:
      UserError: The stored weights have other names or shapes (another config).
    """
    version, values = self.pull(timeout_s, structure=variables)
    if set(values) != set(variables):
      missing = sorted(set(variables) ^ set(values))[0]
      raise UserError(
        f"the learner's policy weights do not match this actor's model ('{missing}'): start the actor "
        "with the learner's --configs and --override"
      )
    for name, variable in variables.items():
      value = values[name]
      if tuple(value.shape) != tuple(variable.shape):
        raise UserError(
          f"the learner's weight '{name}' has shape {tuple(value.shape)}, this actor's "
          f"{tuple(variable.shape)}: start the actor with the learner's --configs and --override"
        )
      variable.assign(value)
    return version

  def close(self) -> None:
    if self._writer is not None:
      try:
        self._writer.close()
      except Exception:
        pass
      self._writer = None


as_dataset = ReverbReplay.as_dataset
start_server = ReverbReplay.start_server
make_tables = ReverbReplay.make_tables


class ReverbLearner:
  """The learner's side of ``--replay=reverb``: server, dataset, weight pushes and counters.

  Starts the server (tables restored from ``checkpoint_dir``) or, with ``replay.reverb_address``
  set, connects to a running one; pushes the agent's policy weights (version = updates) at start
  and every ``push_every_updates`` updates.

  Args:
    config: The resolved config.
    data_spec: The step spec.
    agent: The learner's :class:`~dreamer_tf.agent.dreamer_agent.DreamerAgent`.
    checkpoint_dir: Reverb checkpoint directory (``<logdir>/reverb``).
    port: Server port (None: ``replay.reverb_port`` if set, else a free one).
    stride: Item stride (None: ``replay.reverb_stride`` if set, else ``batch_length // 2``).
    push_every_updates: Updates between weight pushes (None: ``replay.reverb_push_every`` if
      set, else 100).
  """

  def __init__(self, config, data_spec, agent, checkpoint_dir=None, *, port=None, stride=None, push_every_updates=None):
    _require_reverb()
    replay = config.replay
    self.settings = ReverbSettings.from_config(config, stride)
    self.data_spec = plain_spec(data_spec)
    self.agent = agent
    self.variables = policy_variables(agent)
    self.push_every_updates = int(push_every_updates or replay.get("reverb_push_every", 0) or 100)
    self.server = None
    if replay.reverb_address:
      self.address = replay.reverb_address
      ReverbReplay.wait_for_server(self.address, 60.0, tables=(DATA_TABLE, VARIABLE_TABLE))
    else:
      port = port or replay.get("reverb_port", 0) or None
      self.server, self.address = ReverbReplay.start_server(
        config,
        data_spec,
        port,
        variable_spec=variable_spec(self.variables),
        checkpoint_dir=checkpoint_dir,
        stride=self.settings.stride,
      )
    self._client = reverb.Client(self.address)
    self.container = VariableContainer(self._client)
    self._pushed = None

  def push(self, force: bool = False) -> bool:
    """Pushes the policy weights when ``push_every_updates`` updates passed (or ``force``)."""
    updates = int(self.agent.train_step_counter.numpy())
    if not force and self._pushed is not None and updates - self._pushed < self.push_every_updates:
      return False
    self.container.push(self.variables, version=updates)
    self._pushed = updates
    return True

  def dataset(self, rate_limiter_timeout_ms: int = 5000) -> tf.data.Dataset:
    """Training batches ``[B, T, ...]``; the dataset ends when no sample is allowed within the timeout."""
    s = self.settings
    return ReverbReplay.as_dataset(
      self.address,
      DATA_TABLE,
      s.batch_size,
      s.batch_length,
      self.data_spec,
      rate_limiter_timeout_ms=rate_limiter_timeout_ms,
    )

  def stats(self) -> dict:
    """Table counters: items, inserts, samples, agent steps (``inserts * stride``) and the achieved train ratio.

    The achieved ratio is replayed steps per agent step since training started; it includes the
    samples the dataset prefetched but the learner has not trained on yet.
    """
    info = self._client.server_info(timeout=10)[DATA_TABLE]
    limiter = info.rate_limiter_info
    inserts, samples = int(limiter.insert_stats.completed), int(limiter.sample_stats.completed)
    steps = inserts * self.settings.stride
    # Like the local loop, the ratio counts from the start of training (min_size_to_sample items).
    trained_steps = max(0, inserts - self.settings.min_size_to_sample) * self.settings.stride
    return {
      "items": int(info.current_size),
      "inserts": inserts,
      "samples": samples,
      "agent_steps": steps,
      "achieved_ratio": samples * self.settings.batch_length / trained_steps if trained_steps else 0.0,
    }

  def agent_steps(self) -> int:
    """Agent steps of all actors, estimated as ``inserts * stride`` (each stream inserts every stride steps)."""
    return self.stats()["agent_steps"]

  def checkpoint(self, directory=None) -> str:
    """Checkpoints the tables; with ``directory`` (an agent checkpoint), records the path there."""
    path = ReverbReplay.checkpoint(self.address)
    if directory is not None:
      (pathlib.Path(directory) / "reverb_checkpoint.txt").write_text(path + "\n")
    return path

  def close(self) -> None:
    self.container.close()
    if self.server is not None:
      self.server.stop()
      self.server = None
