"""The training schedule: collect, train at the train ratio, and the periodic work of a run.

The data flow, one module each::

  envs --> Collector (training/collector.py) --> replay (replay/) --> Learner (training/learner.py)
       --> Checkpointer (training/checkpointer.py), export.py

:class:`Trainer` builds these for one run and only schedules them. Locally, one iteration of
:meth:`Trainer.run` steps every environment once (:meth:`Collector.collect`), then runs as
many updates (:meth:`Learner.train_once`) as the train ratio allows, then whatever periodic
work is due (logs, evaluation, export, checkpoint). With ``--replay=reverb`` the actors
(``python -m dreamer_tf.actor``) collect with the same :class:`Collector` and the table's rate
limiter holds the ratio (docs/reverb.md).

Until replay holds one batch of windows (``batch_size * batch_length`` windows of
``batch_length`` steps, or ``run.train_start`` windows if more; counted in steps by
:func:`~dreamer_tf.replay.prefill_steps`) a uniformly random policy collects, as in the 2023
code; then the collect policy of the agent does (``run.prefill=policy``, the current generation:
the agent's collect policy from the first step, as the author's current code). The train ratio is the number of replayed
steps (``batch_size * batch_length`` per update) per agent step, counted from the step at which
training starts; the loop runs exactly as many updates as the ratio allows after each collected
step, so the achieved ratio stays within one update of the target.
"""

from __future__ import annotations

import functools
import logging
import os
import pathlib
import time

import tensorflow as tf

from dreamer_tf import distribute
from dreamer_tf import envs as envs_lib
from dreamer_tf.agent.dreamer_agent import DreamerAgent
from dreamer_tf.config import Config
from dreamer_tf.replay import DreamerStepObserver, SequenceReplayBuffer, prefill_steps, replay_step_spec
from dreamer_tf.training import checkpointer as checkpointer_lib
from dreamer_tf.training import cpu_hint
from dreamer_tf.training.collector import Collector
from dreamer_tf.training.counters import Counters, Schedule
from dreamer_tf.training.evaluation import eval_policy, evaluate
from dreamer_tf.training.learner import Learner
from dreamer_tf.training.logger import Logger
from dreamer_tf.training.precision import set_precision
from dreamer_tf.training.progress import ProgressBar
from dreamer_tf.training.run_dir import prepare_logdir

__all__ = ["Trainer", "evaluate", "specs_of"]  # evaluate and specs_of: used with Trainer

_log = logging.getLogger(__name__)

specs_of = envs_lib.tensor_specs


class Trainer:
  """Builds the collector, replay, learner, logger and checkpoints of one run, and schedules them.

  Under a ``tf.distribute`` strategy the agent and counters live in the strategy's scope, each
  batch from replay is the global batch split over the replicas, and with several workers every
  worker collects into its own replay; the chief writes checkpoints, evaluations and exports,
  the other workers log under ``<logdir>/worker-<index>``.

  Args:
    config: The resolved configuration.
    env_name: The ``--env`` name.
    logdir: The run directory (created or resumed).
    strategy: A ``tf.distribute.Strategy`` (default: the current one).
  """

  def __init__(self, config: Config, env_name: str, logdir: str | os.PathLike, strategy=None):
    self.config, self.env_name = config, env_name
    self.strategy = strategy or tf.distribute.get_strategy()
    self.chief = distribute.is_chief(self.strategy)
    run = config.run
    distribute.check_batch_divisible(config.replay.batch_size, self.strategy)
    # The environments before the logdir: an unknown task or a missing package must stop the run
    # before the logdir is created or touched (a run.json of a typo would block the next run).
    self.env = envs_lib.make_batched_env(env_name, config, run.envs, run.seed, run.parallel_envs)
    try:
      worker = "" if self.chief else f"worker-{distribute.tf_config_task()[1]}"
      self.logdir = prepare_logdir(pathlib.Path(logdir) / worker, config, env_name)
    except BaseException:
      self.env.close()
      raise
    _log.info("precision: %s", set_precision(run.precision, run.strategy))
    tf.keras.utils.set_random_seed(run.seed)  # Python, NumPy and TensorFlow (weight initialisation).
    self.batch_size, self.batch_length = config.replay.batch_size, config.replay.batch_length
    with self.strategy.scope():
      self.agent = DreamerAgent(*specs_of(self.env), config, seed=run.seed)
      self.counters = Counters()
    data_spec = replay_step_spec(config, self.env.observation_spec(), self.env.action_spec())
    self.replay = SequenceReplayBuffer.from_config(config, data_spec)
    self.observer = DreamerStepObserver(self.replay)
    self.logger = Logger(self.logdir, step=lambda: self.agent_steps)
    video_fn = lambda frames: self.logger.video("episode/video", frames)
    self.collector = Collector(self.env, self.agent.collect_policy, self.observer, seed=run.seed, video_fn=video_fn)
    self.reverb = None  # --replay=reverb: actors (python -m dreamer_tf.actor) collect; see docs/reverb.md.
    context = config.replay.context  # The current generation's latents in replay: K + T steps, ids, write-back.
    make_dataset = lambda: self.replay.as_dataset(self.batch_size, self.batch_length + context, with_ids=bool(context))
    if config.replay.backend == "reverb":
      from dreamer_tf.replay.reverb_replay import ReverbLearner

      self.reverb = ReverbLearner(config, data_spec, self.agent, self.logdir / "reverb")
      make_dataset = self.reverb.dataset
      port = self.reverb.address.rsplit(":", 1)[-1]
      _log.info("Reverb replay at %s: start actors with --reverb_address=HOST:%s", self.reverb.address, port)
    checkpoints = pathlib.Path(logdir) / "checkpoints"
    self.checkpointer = distribute.DistributedCheckpointer(
      self.strategy, checkpoints, keep=2, agent=self.agent, counters=self.counters
    )
    self.learner = Learner(
      self.agent,
      self.strategy,
      make_dataset,
      jit_compile=run.jit_compile,
      max_nonfinite_skips=run.max_nonfinite_skips,
      checkpoint_dir=checkpoints,
      wait_for_data=self.reverb is not None,
      batch_length=self.batch_length,
      write_back=functools.partial(self.replay.update, offset=context) if context else None,
    )
    self.restored_from = None
    # Without a GPU or TPU, one line after the first updates: seconds per update, the run's estimate.
    self._update_timer = cpu_hint.UpdateTimer() if self.chief and not cpu_hint.accelerator_present() else None

  # Checkpoints.

  def restore(self, path=None):
    """Restores the latest (or the given) checkpoint, including the replay buffer."""
    # With Reverb the server restored its tables from <logdir>/reverb when it started.
    extra = {} if self.reverb is not None else {"replay": self.replay.restore}
    self.restored_from = self.checkpointer.restore(path, extra_restore_fns=extra)
    if self.restored_from:
      size = self.replay.size if self.reverb is None else self.reverb.stats()["items"] * self.reverb.settings.stride
      _log.info(
        "Restored %s at step %d (%d updates, replay %d steps)", self.restored_from, self.agent_steps, self.updates, size
      )
    return self.restored_from

  def save(self):
    payload = {"reverb": self.reverb.checkpoint} if self.reverb is not None else {"replay": self.replay.save}
    return self.checkpointer.save(self.agent_steps, extra_save_fns=payload)

  # Counters and the train ratio (training/counters.py).

  @property
  def agent_steps(self) -> int:
    return int(self.counters.agent_steps.numpy())

  @property
  def updates(self) -> int:
    return self.learner.updates

  @property
  def training_started(self) -> bool:
    return self.counters.training_started

  def updates_due(self) -> int:
    return self.counters.updates_due(self.updates, self.config.run.train_ratio, self.batch_size * self.batch_length)

  def achieved_ratio(self) -> float:
    return self.counters.achieved_ratio(self.updates, self.batch_size * self.batch_length)

  def _prefill_done(self) -> bool:
    window = self.batch_length + self.config.replay.context
    return self.replay.size >= prefill_steps(self.config) and self.replay.stream_length >= window

  def train_once(self):
    """One update on the next batch (see :meth:`Learner.train_once`)."""
    return self.learner.train_once()

  # The loops.

  def run(self, steps: int | None = None, signals: checkpointer_lib.SignalHandler | None = None):
    """Trains until ``steps`` agent steps (default ``config.run.steps``) or a signal."""
    total = int(steps if steps is not None else self.config.run.steps)
    if self.reverb is not None:
      return self._run_reverb(total, signals)
    random_prefill = self.config.run.prefill == "random"
    if not self.training_started:
      who = "a random policy" if random_prefill else "the agent's collect policy"
      _log.info("Prefill: %s collects until replay holds %d steps", who, prefill_steps(self.config))
    self.collector.start(self.agent_steps)
    progress, schedule = ProgressBar(total, self.agent_steps), Schedule.start(self.agent_steps)
    last_return, timed_rate = None, False
    try:
      while self.agent_steps < total and not self._stop_requested(signals):
        collected = self.collector.collect(random=random_prefill and not self.training_started)
        self.counters.agent_steps.assign_add(collected.steps)
        schedule.steps += collected.steps
        for stats in collected.episodes:
          self.counters.episodes.assign_add(1)
          last_return = stats["return"]
          self.logger.episode(self.agent_steps, {f"episode/{k}": v for k, v in stats.items() if k != "env"})
        if not self.training_started and self._prefill_done():
          self.counters.start_training(self.updates)
        due = self.updates_due()
        if due:
          self._train(due, schedule, total)
          if not timed_rate:  # The ETA from the pace of training, its first (traced) updates left out.
            progress.restart_rate(self.agent_steps)
            timed_rate = True
        progress.update(self.agent_steps, fps=schedule.fps(), last_return=last_return)
        if self.config.run.video_every and self.agent_steps - schedule.last_video >= self.config.run.video_every:
          if self.learner.last_batch is not None:
            self._write_videos()
            self.collector.arm_video()
            schedule.last_video = self.agent_steps
        self._periodic(schedule)
    finally:
      progress.close()  # An exception (e.g. NonFiniteError) skips the final save below.
    return self._finish(schedule)

  def _train(self, updates: int, schedule: Schedule, total: int) -> None:
    start = time.time()
    for _ in range(updates):
      self.learner.train_once()
    elapsed = time.time() - start
    schedule.add_training(updates, elapsed)
    per_update = self._update_timer.add(updates, elapsed) if self._update_timer is not None else None
    if per_update is not None:  # The CPU hint (training/cpu_hint.py), once the first updates are timed.
      start, done = int(self.counters.train_start_step.numpy()), self.counters.updates_since_start(self.updates)
      replayed = self.batch_size * self.batch_length
      remaining = cpu_hint.remaining_updates(total, start, done, self.config.run.train_ratio, replayed)
      _log.info(cpu_hint.hint_line(cpu_hint.model_size(self.config.model), per_update, remaining, total))

  def _run_reverb(self, total: int, signals=None):
    """Trains on the actors' data in Reverb until ``total`` agent steps (all actors) or a signal.

    The rate limiter of the Reverb table holds the train ratio (docs/reverb.md): the dataset
    waits while the learner is ahead. Agent steps are estimated as ``inserts * stride``.
    """
    self.reverb.push(force=True)
    progress, schedule = ProgressBar(total, self.agent_steps), Schedule.start(self.agent_steps)
    try:
      while self.agent_steps < total and not self._stop_requested(signals):
        start = time.time()
        if self.learner.train_once() is not None:  # None: no sample allowed in time (no actors yet).
          schedule.add_training(1, time.time() - start)
        self.reverb.push()
        before = self.agent_steps
        self.counters.agent_steps.assign(max(before, self.reverb.agent_steps()))
        schedule.steps += self.agent_steps - before
        progress.update(self.agent_steps, fps=schedule.fps())
        self._periodic(schedule)
    finally:
      progress.close()
    self.counters.agent_steps.assign(max(self.agent_steps, self.reverb.agent_steps()))
    return self._finish(schedule)

  def _stop_requested(self, signals) -> bool:
    # Every worker stops together: agree on a signal that reached one of them.
    if distribute.any_worker(self.strategy, signals is not None and signals.requested):
      _log.warning("Received %s: saving a checkpoint and stopping", signals.signal_name if signals else "a signal")
      return True
    return False

  # Periodic work.

  def _periodic(self, schedule: Schedule):
    """Logs, evaluates, exports and checkpoints when their intervals have passed."""
    run = self.config.run
    now = time.time()
    if now - schedule.last_log >= run.log_every_secs:
      self._write_logs(schedule)
    if run.eval_every and self.agent_steps - schedule.last_eval >= run.eval_every:
      if self.chief:
        self.evaluate(run.eval_episodes)
      schedule.last_eval = self.agent_steps
    if run.export_every and self.agent_steps - schedule.last_export >= run.export_every:
      if self.chief:
        self.export()
      schedule.last_export = self.agent_steps
    # Every worker must take part in a checkpoint: agree on the clock-based decision.
    # Never in the middle of a non-finite streak: the last good state stays the newest.
    due = now - schedule.last_ckpt >= run.checkpoint_every_secs and not self.learner.nonfinite_streak
    if distribute.any_worker(self.strategy, due):
      self.save()
      schedule.last_ckpt = time.time()

  def _finish(self, schedule: Schedule) -> int:
    self._write_logs(schedule)
    self.save()
    self.logger.flush()
    return self.agent_steps

  def _write_logs(self, schedule: Schedule):
    """Writes the mean training metrics and the throughput since the last write."""
    self.logger.scalars(self.learner.pop_metrics(), prefix="train")
    if self.reverb is not None:
      stats = self.reverb.stats()
      size, ratio = stats["items"], stats["achieved_ratio"]
    else:
      size, ratio = self.replay.size, self.achieved_ratio()
    replayed = self.batch_size * self.batch_length
    self.logger.scalars(
      {
        "fps/policy": schedule.fps(),
        "fps/train": schedule.updates * replayed / schedule.train_secs if schedule.updates else 0.0,
        "replay/size": size,
        "train/updates": self.updates,
        "train/nonfinite_skips": self.learner.nonfinite_total,
        "train/achieved_ratio": ratio,
        "episodes": int(self.counters.episodes.numpy()),
      }
    )
    self.logger.write(self.agent_steps)
    schedule.reset_rates()

  def _write_videos(self):
    for key, video in self.learner.report_videos().items():
      self.logger.video(f"openloop/{key}", video)
    self.logger.write(self.agent_steps)

  def eval_policy(self):
    """A fresh evaluation policy (:func:`~dreamer_tf.training.evaluation.eval_policy`)."""
    return eval_policy(self.agent, self.config)

  def evaluate(self, episodes: int):
    """Runs evaluation episodes with :meth:`eval_policy` and logs ``eval/return`` rows."""
    env = envs_lib.make_env(self.env_name, self.config, seed=self.config.run.seed + 10_000)
    try:
      results = evaluate(self.eval_policy(), env, episodes)
    finally:
      env.close()
    for stats in results:
      self.logger.eval_episode(self.agent_steps, {f"eval/{k}": v for k, v in stats.items() if k != "env"})
    return results

  def export(self):
    """Exports the greedy policy as a SavedModel under ``<logdir>/saved_models/<env>``."""
    from dreamer_tf import export

    name = self.env_name.replace("/", "_")
    return export.export_policy(
      self.agent, self.config, self.env_name, self.logdir / "saved_models" / name, train_step=self.updates, keep=5
    )

  def close(self):
    self.logger.close()
    self.collector.close()
    if self.reverb is not None:
      self.reverb.close()
