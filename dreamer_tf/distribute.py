"""tf.distribute strategies for training: one device, several GPUs or CPUs, several hosts, TPUs.

The training step is data-parallel (synchronous SGD): every replica holds a copy of all
variables, runs ``DreamerAgent.train`` on its slice of the global batch, and the agent sums the
replicas' gradients (each loss divided by the replica count) before clipping, so a step on N
replicas follows the gradient of the global-batch mean. Typical use::

  split_cpu(2)                              # optional, before TensorFlow touches its devices
  strategy = make_strategy("mirrored")      # or default | multi_worker | tpu
  check_batch_divisible(config.replay.batch_size, strategy)
  with strategy.scope():                    # every variable is created under the scope
    agent = DreamerAgent(time_step_spec, action_spec, config)
  train_fn = distributed_train_fn(strategy, agent, jit_compile=config.run.jit_compile)
  batches = iter(distribute_dataset(strategy, replay.as_dataset(B, T)))   # global batches
  info = train_fn(next(batches))            # LossInfo of replica-mean scalars

See ``docs/distributed.md`` for the command lines of each set-up.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Mapping

import tensorflow as tf
from tf_agents.agents import tf_agent

from dreamer_tf.errors import UserError

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")

_log = logging.getLogger(__name__)

# An XLA flag (a common recipe for one CPU thread under JAX) under which TensorFlow 2.15's XLA rounds the
# last ``n % 16`` output columns of a CPU matmul differently from the others: see undo_single_threaded_eigen.
_SINGLE_THREADED_EIGEN = re.compile(r"^--xla_cpu_multi_thread_eigen=(false|0)$", re.IGNORECASE)


def undo_single_threaded_eigen(environ=os.environ) -> str | None:
  """Turns ``--xla_cpu_multi_thread_eigen=false`` in ``XLA_FLAGS`` into ``=true`` (XLA's default) before XLA
  first reads them.

  Under that flag TensorFlow 2.15's XLA computes the last ``n % 16`` output columns of a CPU matmul
  (15 of the symexp twohot heads' 255 bins) with a different rounding than the others, so identical
  weight columns give logits that differ in the last bit. The current generation's reward and critic heads
  keep every far bin's column identical (their output layers start at zero and those bins get the
  same gradient), and their prediction ``sum(probs * bins)`` with bins up to 4.9e8 turns those bits
  into errors of up to about 1 (their weights then drift apart as well): the imagined rewards and
  returns spread and the return normaliser's scale grows (docs/parity.md section f). Without the
  flag XLA runs its matmuls on TensorFlow's intra-op thread pool (``TF_NUM_INTRAOP_THREADS``).
  XLA reads ``XLA_FLAGS`` once, at its first compilation: this must run before that. The flag is replaced,
  not removed: XLA reads ``XLA_FLAGS`` as a file name when its first word does not start with ``--`` (the
  JAX recipe's second word, ``intra_op_parallelism_threads=1``, would be left first).

  Args:
    environ: The environment to change (the process's).

  Returns:
    The replaced flag, or None when ``XLA_FLAGS`` did not hold it.
  """
  flags = environ.get("XLA_FLAGS", "").split()
  found = [f for f in flags if _SINGLE_THREADED_EIGEN.match(f)]
  if not found:
    return None
  multi = "--xla_cpu_multi_thread_eigen=true"
  environ["XLA_FLAGS"] = " ".join(multi if _SINGLE_THREADED_EIGEN.match(f) else f for f in flags)
  _log.warning(
    "XLA_FLAGS: %s replaced by %s: under it TensorFlow's XLA rounds some matmul output columns differently and "
    "the symexp twohot heads' predictions go wrong; XLA runs on TF_NUM_INTRAOP_THREADS threads either way",
    found[0],
    multi,
  )
  return found[0]


def split_cpu(num_devices: int) -> list:
  """Splits the first physical CPU into ``num_devices`` logical CPU devices.

  This is how one machine without accelerators gets several replicas for
  ``MirroredStrategy`` (for tests and for trying out a multi-device set-up). It must run before
  TensorFlow initialises its devices, i.e. before the first op, variable or ``list_logical_devices``
  call of the process.

  Args:
    num_devices: Number of logical CPU devices (1 leaves the configuration unchanged).

  Returns:
    The logical CPU devices.

  Raises:
    UserError: If ``num_devices`` is below 1, or if TensorFlow's devices are already initialised
      with another number of logical CPUs.
  """
  num_devices = int(num_devices)
  if num_devices < 1:
    raise UserError(f"the number of logical CPU devices must be at least 1, got {num_devices}")
  cpu = tf.config.list_physical_devices("CPU")[0]
  if num_devices > 1:
    try:
      tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * num_devices)
    except RuntimeError:
      current = len(tf.config.list_logical_devices("CPU"))
      if current != num_devices:
        raise UserError(
          f"cannot split the CPU into {num_devices} logical devices: TensorFlow already started with "
          f"{current}; split the CPU at program start, before any TensorFlow op"
        ) from None
  return tf.config.list_logical_devices("CPU")


def make_strategy(name: str, tpu: str | None = None, devices: list[str] | None = None) -> tf.distribute.Strategy:
  """Creates the ``--strategy`` (``run.strategy``) distribution strategy.

  Args:
    name: ``default`` (the current strategy: one device), ``mirrored`` (all logical GPUs of this
      machine, else all logical CPUs), ``multi_worker`` (MultiWorkerMirroredStrategy over the
      hosts named in the ``TF_CONFIG`` environment variable) or ``tpu`` (see :func:`setup_tpu`).
    tpu: The ``--tpu`` value (TPU name, ``grpc://`` address or ``local``); only for ``tpu``.
    devices: Explicit device names for ``mirrored`` (default: see above).

  Returns:
    The strategy. Create the agent under ``strategy.scope()``. ``multi_worker`` and ``tpu`` must
    be created at program start, before any other TensorFlow op.

  Raises:
    UserError: For an unknown name, or a missing or invalid ``TF_CONFIG`` for ``multi_worker``.
  """
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    if devices is None:
      devices = [d.name for d in tf.config.list_logical_devices("GPU")]
      devices = devices or [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices=list(devices))
  if name == "multi_worker":
    tf_config_task()  # Fails with a one-line message before TensorFlow's own error.
    return tf.distribute.MultiWorkerMirroredStrategy()
  if name == "tpu":
    return setup_tpu(tpu)
  raise UserError(f"unknown strategy '{name}': use one of {', '.join(STRATEGIES)}")


def tf_config_task() -> tuple[str, int, int]:
  """Reads and checks ``TF_CONFIG`` for multi-worker training.

  Returns:
    ``(task_type, task_index, num_workers)``.

  Raises:
    UserError: If ``TF_CONFIG`` is missing, not JSON, or lacks ``cluster.worker`` / ``task``.
  """
  example = (
    'TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}\''
  )
  text = os.environ.get("TF_CONFIG", "")
  if not text.strip():
    raise UserError(f"--strategy=multi_worker needs the TF_CONFIG environment variable on every host, e.g. {example}")
  try:
    config = json.loads(text)
    workers = config["cluster"]["worker"]
    task_type = config["task"]["type"]
    index = int(config["task"]["index"])
    valid = isinstance(workers, list) and workers and all(isinstance(w, str) and ":" in w for w in workers)
    valid = valid and task_type in ("worker", "chief") and 0 <= index < len(config["cluster"].get(task_type, []))
  except (ValueError, KeyError, TypeError):
    valid = False
  if not valid:
    raise UserError(f"TF_CONFIG is not a valid multi-worker configuration ({text[:120]!r}); use e.g. {example}")
  num_workers = len(workers) + len(config["cluster"].get("chief", []))
  return task_type, index, num_workers


def setup_tpu(tpu: str | None) -> tf.distribute.TPUStrategy:
  """Connects to a Cloud TPU, initialises it and returns a ``TPUStrategy`` over its cores.

  ``tpu='local'`` (or None) uses the TPU attached to this TPU VM; any other value is the TPU's
  name (resolved through the Cloud TPU API of this project and zone) or its ``grpc://`` address,
  for a TPU node driven from another VM. Call it once, at program start.

  Raises:
    UserError: If no TPU can be found or initialised.
  """
  tpu = tpu or "local"
  try:
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    if tpu != "local":
      tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
  except (ValueError, RuntimeError, tf.errors.OpError) as e:
    reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
    raise UserError(
      f"cannot use TPU '{tpu}' ({reason}); on a TPU VM pass --tpu=local, else the TPU name or grpc:// address"
    ) from None
  return tf.distribute.TPUStrategy(resolver)


def is_tpu(strategy: tf.distribute.Strategy) -> bool:
  return isinstance(strategy, (tf.distribute.TPUStrategy, tf.distribute.experimental.TPUStrategy))


def check_batch_divisible(global_batch: int, strategy: tf.distribute.Strategy) -> int:
  """Returns the per-replica batch size.

  Raises:
    UserError: If ``global_batch`` is not a multiple of the number of replicas.
  """
  replicas = strategy.num_replicas_in_sync
  if global_batch % replicas:
    lower = max(replicas, global_batch // replicas * replicas)
    raise UserError(
      f"replay.batch_size={global_batch} is not divisible by the {replicas} replicas of the strategy; "
      f"use --override=replay.batch_size={lower} or {lower + replicas}"
    )
  return global_batch // replicas


def device_batch(batch: Mapping) -> dict:
  """Casts a replay batch to dtypes that every accelerator supports, keeping its values.

  uint8 images become bfloat16 (exact for 0..255, half the size of float32), bool flags
  float32; int32 actions and float32 values are kept. The agent casts its inputs itself, so the
  result trains exactly like the original batch. Used for TPUs, where uint8 and bool tensors are
  not supported by every op and by every infeed.
  """

  def cast(x):
    if x.dtype == tf.uint8:
      return tf.cast(x, tf.bfloat16)
    if x.dtype == tf.bool:
      return tf.cast(x, tf.float32)
    return x

  return tf.nest.map_structure(cast, dict(batch))


def distribute_dataset(strategy: tf.distribute.Strategy, dataset: tf.data.Dataset, cast_for_device: bool | None = None):
  """Distributes a dataset of GLOBAL batches: each replica gets ``batch_size / replicas`` rows.

  Under ``multi_worker`` every worker samples global batches from its own replay and feeds its
  replicas with consecutive slices of them (auto-sharding is off: replay samples are not files
  and every worker's stream is already independent).

  Args:
    strategy: The strategy.
    dataset: Yields nested dicts ``[B, T, ...]`` (``SequenceReplayBuffer.as_dataset``).
    cast_for_device: Apply :func:`device_batch` on the host before the batches cross to the
      devices (default: for TPU strategies only).

  Returns:
    A ``tf.distribute.DistributedDataset`` (for the default strategy: the dataset itself).
  """
  if cast_for_device is None:
    cast_for_device = is_tpu(strategy)
  if cast_for_device:
    dataset = dataset.map(device_batch)
  if strategy.num_replicas_in_sync == 1 and not _multi_worker(strategy) and not is_tpu(strategy):
    return dataset
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
  return strategy.experimental_distribute_dataset(dataset.with_options(options))


def distributed_train_fn(strategy: tf.distribute.Strategy, agent, jit_compile: bool = False):
  """A ``tf.function`` that runs one update of ``agent`` on a distributed global batch.

  The returned function takes one element of :func:`distribute_dataset` and returns a
  ``LossInfo`` whose ``loss`` and ``extra`` scalars are the MEAN over replicas (every loss term
  is a per-replica mean over equally sized slices, so that is the global-batch mean). With
  ``jit_compile`` each replica's step is compiled with XLA (required on TPUs, which compile
  every step anyway), and ``--xla_cpu_multi_thread_eigen=false`` in ``XLA_FLAGS`` becomes ``=true``
  (:func:`undo_single_threaded_eigen`).
  """

  def replica_step(batch):
    return agent.train(batch)

  if jit_compile:
    undo_single_threaded_eigen()
  if strategy.num_replicas_in_sync == 1 and not _multi_worker(strategy) and not is_tpu(strategy):
    return tf.function(agent.train, jit_compile=bool(jit_compile))
  if jit_compile and not is_tpu(strategy):
    devices = strategy.extended.worker_devices
    if not all("GPU" in d.upper() for d in devices):
      raise UserError(
        f"--jit_compile works with --strategy={strategy_name(strategy)} on GPUs only (devices: "
        f"{', '.join(devices)}); pass --nojit_compile"
      )
    replica_step = tf.function(replica_step, jit_compile=True)

  def step(batch):
    info = strategy.run(replica_step, args=(batch,))
    mean = lambda x: strategy.reduce(tf.distribute.ReduceOp.MEAN, x, axis=None)
    extra = dict(info.extra)
    replay = extra.pop("replay", None)
    extra = {k: mean(v) for k, v in extra.items()}
    if replay is not None:  # The replay context's write-back: this worker's rows, each with its window id.
      extra["replay"] = {k: tf.concat(strategy.experimental_local_results(v), 0) for k, v in replay.items()}
    return tf_agent.LossInfo(loss=mean(info.loss), extra=extra)

  return tf.function(step)


def strategy_name(strategy: tf.distribute.Strategy) -> str:
  """The ``--strategy`` name of a strategy object."""
  if is_tpu(strategy):
    return "tpu"
  if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return "multi_worker"
  if isinstance(strategy, tf.distribute.MirroredStrategy):
    return "mirrored"
  return "default"


def _multi_worker(strategy) -> bool:
  return bool(getattr(strategy.extended, "_in_multi_worker_mode", lambda: False)())


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this process writes checkpoints and logs (always true outside multi-worker)."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not _multi_worker(strategy):
    return True
  task_type, task_id = resolver.task_type, resolver.task_id
  has_chief = "chief" in resolver.cluster_spec().jobs
  return task_type == "chief" or (task_type == "worker" and task_id == 0 and not has_chief)


def barrier(strategy: tf.distribute.Strategy) -> None:
  """Returns once every worker got here (an all-reduce of one number)."""
  if _multi_worker(strategy):
    ones = strategy.run(lambda: tf.constant(1.0))
    strategy.reduce(tf.distribute.ReduceOp.SUM, ones, axis=None).numpy()


def any_worker(strategy: tf.distribute.Strategy, flag: bool) -> bool:
  """Whether ``flag`` is true on any worker (outside multi-worker training: ``flag`` itself).

  Multi-worker training must take the same collective steps on every worker, so decisions that
  depend on local state (the wall clock of a checkpoint interval, a SIGTERM received by one host)
  are agreed on with this all-reduce before acting on them.
  """
  if not _multi_worker(strategy):
    return bool(flag)
  value = tf.constant(1.0 if flag else 0.0)
  flags = strategy.run(lambda: tf.identity(value))
  return bool(strategy.reduce(tf.distribute.ReduceOp.SUM, flags, axis=None).numpy() > 0)


class DistributedCheckpointer:
  """Checkpoints that multi-worker training writes once, from the chief.

  Every worker calls :meth:`save` at the same steps (saving variables may run collective ops).
  The chief writes ``directory`` through a :class:`~dreamer_tf.training.checkpointer.Checkpointer`
  (atomic, verified, with its extra payloads such as the replay buffer); other workers write the
  variables into a temporary directory that is deleted at once, and skip the payloads. Every
  worker restores from ``directory``, which must therefore be on a filesystem all hosts share
  (one host: any local path). Outside multi-worker training this is a plain ``Checkpointer``.

  Args:
    strategy: The strategy the trackables were created under.
    directory: The checkpoint directory (the chief's, shared for restoring).
    keep: How many checkpoints the chief keeps.
    **trackables: As for ``Checkpointer``.
  """

  def __init__(self, strategy, directory, keep: int = 2, **trackables):
    from dreamer_tf.training.checkpointer import Checkpointer

    self.strategy = strategy
    self.chief = is_chief(strategy)
    self.checkpointer = Checkpointer(directory, keep=keep, **trackables)
    self._trackables = trackables

  @property
  def directory(self):
    return self.checkpointer.directory

  def save(self, step: int, extra_save_fns=None):
    """Saves on every worker; returns the chief's checkpoint path (None on other workers)."""
    from dreamer_tf.training.checkpointer import Checkpointer

    if self.chief:
      path = self.checkpointer.save(step, extra_save_fns=extra_save_fns)
    else:
      scratch = tempfile.mkdtemp(prefix="dreamer_worker_ckpt_")
      try:
        Checkpointer(scratch, keep=1, **self._trackables).save(step)
      finally:
        shutil.rmtree(scratch, ignore_errors=True)
      path = None
    barrier(self.strategy)  # When save returns anywhere, the chief's checkpoint is complete.
    return path

  def restore(self, path=None, extra_restore_fns=None):
    """Restores every worker from the chief's directory (see ``Checkpointer.restore``)."""
    barrier(self.strategy)
    return self.checkpointer.restore(path, extra_restore_fns=extra_restore_fns)
