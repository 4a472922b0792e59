"""The Learner: replay dataset -> distributed train step, with the non-finite policy and metrics.

One implementation of the learner's side, used with the local replay and with Reverb::

  SequenceReplayBuffer.as_dataset(B, T) | ReverbLearner.dataset()
    --distribute_dataset--> DreamerAgent.train (tf.function, per replica) --> LossInfo
    --> metrics (means at each log write), the last batch (open-loop report videos)

An update whose loss or gradients are not finite is skipped inside the train step (nothing
changes); :class:`Learner` counts the streak and stops training with :class:`NonFiniteError`
after ``run.max_nonfinite_skips`` in a row.
"""

from __future__ import annotations

import logging
import pathlib
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from dreamer_tf import distribute
from dreamer_tf.errors import UserError

_log = logging.getLogger(__name__)

# What a dataset raises when no batch came within its timeout (Reverb, while no actor writes).
NO_BATCH_ERRORS = (StopIteration, tf.errors.OutOfRangeError, tf.errors.DeadlineExceededError)


class NonFiniteError(UserError):
  """Too many consecutive updates had non-finite losses or gradients."""


class Learner:
  """Draws batches from a dataset and trains the agent on them under a ``tf.distribute`` strategy.

  Args:
    agent: The :class:`~dreamer_tf.agent.dreamer_agent.DreamerAgent` (built in the strategy's scope).
    strategy: The ``tf.distribute.Strategy``.
    make_dataset: Returns the ``tf.data.Dataset`` of global batches ``[B, T, ...]``; called on the
      first update and again after a dataset ran dry (see ``wait_for_data``).
    jit_compile: Compile the train step with XLA.
    max_nonfinite_skips: Consecutive skipped (non-finite) updates tolerated.
    checkpoint_dir: Named in the :class:`NonFiniteError` message.
    wait_for_data: With Reverb the dataset ends when no sample is allowed within its timeout
      (no actor writes yet): :meth:`train_once` then returns None and the next call starts a new
      dataset. Without it such an error propagates.
    batch_length: Steps per window, for the open-loop report's context length.
    write_back: The replay context's write-back, ``write_back(ids, {column: [B, T, ...]})``
      (e.g. ``functools.partial(SequenceReplayBuffer.update, offset=K)``), called with the latents of
      every applied update; None without the context.
  """

  def __init__(
    self,
    agent,
    strategy: tf.distribute.Strategy,
    make_dataset: Callable[[], tf.data.Dataset],
    *,
    jit_compile: bool = False,
    max_nonfinite_skips: int = 10,
    checkpoint_dir: str | pathlib.Path = "checkpoints",
    wait_for_data: bool = False,
    batch_length: int = 64,
    write_back: Callable | None = None,
  ):
    self.agent = agent
    self.strategy = strategy
    self._make_dataset = make_dataset
    self._max_nonfinite_skips = int(max_nonfinite_skips)
    self._checkpoint_dir = checkpoint_dir
    self._wait_for_data = wait_for_data
    self._batch_length = int(batch_length)
    self._write_back = write_back
    self._train_fn = distribute.distributed_train_fn(strategy, agent, jit_compile)
    self._report_fn = tf.function(self._report)
    self._iterator = None
    self._metrics: list[dict] = []
    self.last_batch = None
    self.nonfinite_streak = 0
    self.nonfinite_total = 0

  @property
  def updates(self) -> int:
    """Updates applied or skipped so far (the agent's checkpointed train step counter)."""
    return int(self.agent.train_step_counter.numpy())

  def reset_dataset(self) -> None:
    """Starts a new dataset at the next update."""
    self._iterator = None

  def train_once(self):
    """Runs one update on the next batch.

    Returns:
      The update's ``LossInfo``, or None when ``wait_for_data`` and no batch came in time.

    Raises:
      NonFiniteError: More than ``max_nonfinite_skips`` updates in a row were skipped.
    """
    if self._iterator is None:
      self._iterator = iter(distribute.distribute_dataset(self.strategy, self._make_dataset()))
    try:
      batch = next(self._iterator)
    except NO_BATCH_ERRORS:
      if not self._wait_for_data:
        raise
      self._iterator = None
      return None
    info = self._train_fn(batch)
    replay = info.extra.pop("replay", None)
    if replay is not None and self._write_back is not None and float(info.extra["nonfinite"]) == 0:
      ids = replay.pop("ids").numpy()
      self._write_back(ids, {k: v.numpy() for k, v in replay.items()})
    self._metrics.append(info.extra)
    if self.strategy.num_replicas_in_sync > 1:
      batch = self.strategy.experimental_local_results(batch)[0]
    self.last_batch = batch
    self._count_nonfinite(float(info.extra["nonfinite"]) > 0)
    return info

  def _count_nonfinite(self, skipped: bool) -> None:
    if not skipped:
      self.nonfinite_streak = 0
      return
    self.nonfinite_streak += 1
    self.nonfinite_total += 1
    _log.warning("Skipped an update with a non-finite loss or gradient (%d in a row)", self.nonfinite_streak)
    if self.nonfinite_streak > self._max_nonfinite_skips:
      raise NonFiniteError(
        f"training stopped: {self.nonfinite_streak} consecutive updates had non-finite losses or gradients "
        f"(run.max_nonfinite_skips={self._max_nonfinite_skips}); the last checkpoint in "
        f"{self._checkpoint_dir} is untouched; lower the learning rates or check the environment's "
        "rewards and observations"
      )

  def pop_metrics(self) -> dict[str, float]:
    """The mean of each training metric since the last call (empty without updates)."""
    if not self._metrics:
      return {}
    keys = self._metrics[0].keys()
    means = {k: float(np.mean([m[k].numpy() for m in self._metrics])) for k in keys}
    self._metrics = []
    return means

  def report_videos(self) -> dict[str, np.ndarray]:
    """Open-loop predictions on the last batch: per image key, ``[4, T, H, 3W, C]`` uint8 videos.

    Each frame shows the truth, the world model's prediction (from ``min(5, T // 2)`` context
    steps on) and their difference side by side. Empty before the first update.
    """
    if self.last_batch is None:
      return {}
    videos = self._report_fn(self.last_batch)
    return {key: (video.numpy() * 255).astype(np.uint8) for key, video in videos.items()}

  def _report(self, batch):
    data = self.agent.preprocess(batch)
    data = tf.nest.map_structure(lambda x: x[:4], data)
    seed = tf.constant([7, 11], tf.int64)
    predictions = self.agent.world_model.open_loop(data, seed, context=min(5, self._batch_length // 2))
    videos = {}
    for key, pred in predictions.items():
      truth = tf.cast(data["obs"][key], tf.float32) / 255.0
      error = (pred - truth + 1.0) / 2.0
      videos[key] = tf.concat([truth, pred, error], 2)  # real | predicted | error, side by side
    return videos
