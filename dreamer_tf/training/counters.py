"""A run's progress: checkpointed counters, the train ratio they schedule, and the periodic work's clock."""

from __future__ import annotations

import dataclasses
import time

import tensorflow as tf

from dreamer_tf.training import cpu_hint


class Counters(tf.Module):
  """Agent steps, episodes and the step and update at which training started, checkpointed.

  The train ratio (hyperparameter table of the paper) is replayed steps per agent step, counted
  from the step at which training starts (after the random prefill): ``replayed_per_update =
  batch_size * batch_length`` steps per update.
  """

  def __init__(self):
    super().__init__(name="counters")
    self.agent_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="agent_steps")
    self.episodes = tf.Variable(0, dtype=tf.int64, trainable=False, name="episodes")
    self.train_start_step = tf.Variable(-1, dtype=tf.int64, trainable=False, name="train_start_step")
    self.train_start_updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="train_start_updates")

  @property
  def training_started(self) -> bool:
    """Whether the random prefill is over (checkpointed: a resumed run does not prefill again)."""
    return int(self.train_start_step.numpy()) >= 0

  def start_training(self, updates: int) -> None:
    """Marks the current agent step, with ``updates`` done so far, as the start of training."""
    self.train_start_step.assign(self.agent_steps)
    self.train_start_updates.assign(updates)

  def steps_since_start(self) -> int:
    return int(self.agent_steps.numpy()) - int(self.train_start_step.numpy())

  def updates_since_start(self, updates: int) -> int:
    return updates - int(self.train_start_updates.numpy())

  def updates_due(self, updates: int, train_ratio: float, replayed_per_update: int) -> int:
    """Updates the train ratio allows at the current step, minus those done (``updates`` in all)."""
    if not self.training_started:
      return 0
    allowed = cpu_hint.allowed_updates(self.steps_since_start(), train_ratio, replayed_per_update)
    return max(0, allowed - self.updates_since_start(updates))

  def achieved_ratio(self, updates: int, replayed_per_update: int) -> float:
    """Replayed steps per agent step since training started (0 before)."""
    if not self.training_started:
      return 0.0
    return self.updates_since_start(updates) * replayed_per_update / max(1, self.steps_since_start())


@dataclasses.dataclass
class Schedule:
  """When the periodic work of a run last ran, and its throughput since the last log write (not checkpointed)."""

  last_log: float
  last_ckpt: float
  last_eval: int
  last_export: int
  last_video: int
  steps: int = 0  # agent steps since the last log write
  updates: int = 0
  train_secs: float = 0.0

  @classmethod
  def start(cls, agent_steps: int) -> Schedule:
    now = time.time()
    return cls(now, now, agent_steps, agent_steps, agent_steps)

  def add_training(self, updates: int, seconds: float) -> None:
    self.updates += updates
    self.train_secs += seconds

  def fps(self) -> float:
    return self.steps / max(1e-6, time.time() - self.last_log)

  def reset_rates(self) -> None:
    self.last_log, self.steps, self.updates, self.train_secs = time.time(), 0, 0, 0.0
