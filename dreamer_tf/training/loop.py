"""The training loop: collect with a TF-Agents driver, replay, train at the train ratio.

One iteration of :meth:`Trainer.run`::

  envs --(PyDriver + collect policy)--> DreamerStepObserver --> SequenceReplayBuffer
  SequenceReplayBuffer.as_dataset(B, T) --> DreamerAgent.train (tf.function)
  every N seconds: Logger.write, Checkpointer.save (agent, counters, replay)

Until replay holds one batch of windows (``batch_size * batch_length`` windows of
``batch_length`` steps, or ``run.train_start`` windows if more; counted in steps by
:func:`~dreamer_tf.replay.prefill_steps`) a uniformly
random policy collects, as in the 2023 code; then the collect policy of the agent does.
The train ratio is the number of replayed steps (``batch_size * batch_length`` per
update) per agent step, counted from the step at which training starts; the loop
runs exactly as many updates as the ratio allows after each collected step, so
the achieved ratio stays within one update of the target.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import time

import numpy as np
import tensorflow as tf
from tf_agents.drivers import py_driver
from tf_agents.policies import py_tf_eager_policy, random_py_policy

from dreamer_tf import distribute
from dreamer_tf import envs as envs_lib
from dreamer_tf.agent.dreamer_agent import DreamerAgent
from dreamer_tf.agent.dreamer_policy import DreamerPolicy
from dreamer_tf.config import Config, load_saved_config, save_config
from dreamer_tf.errors import UserError
from dreamer_tf.replay import DreamerStepObserver, SequenceReplayBuffer, prefill_steps, step_spec
from dreamer_tf.training import checkpointer as checkpointer_lib
from dreamer_tf.training import cpu_hint
from dreamer_tf.training.episode_video import EpisodeVideoRecorder
from dreamer_tf.training.logger import Logger
from dreamer_tf.training.progress import ProgressBar

_log = logging.getLogger(__name__)

# Config sections that must match when a logdir is resumed: they shape the networks and data.
_RESUME_MUST_MATCH = ("model", "env", "replay.batch_size", "replay.batch_length")


@dataclasses.dataclass
class _Schedule:
  """When the periodic work last ran, and the throughput since the last log write."""

  last_log: float
  last_ckpt: float
  last_eval: int
  last_export: int
  last_video: int
  steps: int = 0  # agent steps since the last log write
  updates: int = 0
  train_secs: float = 0.0

  @classmethod
  def start(cls, agent_steps: int) -> _Schedule:
    now = time.time()
    return cls(now, now, agent_steps, agent_steps, agent_steps)

  def add_training(self, updates: int, seconds: float) -> None:
    self.updates += updates
    self.train_secs += seconds

  def fps(self) -> float:
    return self.steps / max(1e-6, time.time() - self.last_log)

  def reset_rates(self) -> None:
    self.last_log, self.steps, self.updates, self.train_secs = time.time(), 0, 0, 0.0


class NonFiniteError(UserError):
  """Too many consecutive updates had non-finite losses or gradients."""


class Counters(tf.Module):
  """Checkpointed progress counters."""

  def __init__(self):
    super().__init__(name="counters")
    self.agent_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="agent_steps")
    self.episodes = tf.Variable(0, dtype=tf.int64, trainable=False, name="episodes")
    self.train_start_step = tf.Variable(-1, dtype=tf.int64, trainable=False, name="train_start_step")
    self.train_start_updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="train_start_updates")


def _get(config, dotted):
  node = config
  for part in dotted.split("."):
    node = node[part]
  return node.to_dict() if isinstance(node, Config) else node


def prepare_logdir(logdir: str | os.PathLike, config: Config, env_name: str) -> pathlib.Path:
  """Creates the logdir, or checks that an existing run in it is compatible.

  A logdir that holds a run with another environment or a differently shaped
  model is refused with a one-line :class:`UserError`, and nothing in it is
  changed.
  """
  logdir = pathlib.Path(logdir)
  run_file = logdir / "run.json"
  if run_file.exists():
    previous = json.loads(run_file.read_text())
    if previous.get("env") != env_name:
      raise UserError(
        f"logdir {logdir} holds a run of --env={previous.get('env')}, not {env_name}: "
        "use another --logdir or the same --env"
      )
    config_file = logdir / "config.yaml"
    if config_file.exists():
      old = load_saved_config(config_file)
      for key in _RESUME_MUST_MATCH:
        if _get(old, key) != _get(config, key):
          raise UserError(
            f"logdir {logdir} holds a run with a different {key} config; resume with the same "
            "--configs/--override or use another --logdir"
          )
  try:
    logdir.mkdir(parents=True, exist_ok=True)
    probe = logdir / ".write_test"
    probe.write_text("ok")
    probe.unlink()
  except OSError as e:
    raise UserError(f"cannot write to logdir {logdir}: {e.strerror}; choose a writable --logdir") from None
  save_config(config, logdir)
  tmp = run_file.with_suffix(".tmp")
  tmp.write_text(json.dumps({"env": env_name}))
  os.replace(tmp, run_file)
  return logdir


def resolve_precision(precision: str, strategy: str = "default") -> str:
  """``run.precision`` for this machine: ``auto`` (the current generation's default, as its
  ``jax.compute_dtype: bfloat16``) is ``mixed_bfloat16`` on a GPU or TPU and float32 on a CPU."""
  if precision != "auto":
    return precision
  if strategy == "tpu" or tf.config.list_physical_devices("GPU"):
    return "mixed_bfloat16"
  return "float32"


def set_precision(precision: str, strategy: str = "default") -> str:
  """Sets the Keras mixed-precision policy (float32, mixed_float16, mixed_bfloat16 or auto, see
  :func:`resolve_precision`); returns the policy's name."""
  precision = resolve_precision(precision, strategy)
  tf.keras.mixed_precision.set_global_policy(precision)
  return precision


specs_of = envs_lib.tensor_specs


def evaluate(policy, env, episodes: int, max_steps: int = 10**7) -> list[dict]:
  """Runs ``episodes`` episodes of ``policy`` on a single ``env``; returns their stats."""
  py_policy = py_tf_eager_policy.PyTFEagerPolicy(policy, use_tf_function=True, batch_time_steps=True)
  tracker = envs_lib.EpisodeTracker()
  results = []
  time_step = env.reset()
  tracker.update(time_step)
  state = py_policy.get_initial_state(1)
  steps = 0
  while len(results) < episodes and steps < max_steps:
    action_step = py_policy.action(time_step, state)
    state = action_step.state
    time_step = env.step(action_step.action)
    steps += 1
    results += tracker.update(time_step)
    if time_step.is_last():
      time_step = env.reset()
      tracker.update(time_step)
  return results


class Trainer:
  """Owns the environments, agent, replay, logger and checkpoints of one run.

  Under a ``tf.distribute`` strategy the agent and counters live in the
  strategy's scope, each batch from replay is the global batch split over the
  replicas, and with several workers every worker collects into its own
  replay; the chief writes checkpoints, evaluations and exports, the other
  workers log under ``<logdir>/worker-<index>``.

  Args:
    config: The resolved configuration.
    env_name: The ``--env`` name.
    logdir: The run directory (created or resumed).
    strategy: A ``tf.distribute.Strategy`` (default: the current one).
  """

  def __init__(self, config: Config, env_name: str, logdir: str | os.PathLike, strategy=None):
    self.config = config
    self.env_name = env_name
    self.strategy = strategy or tf.distribute.get_strategy()
    self.chief = distribute.is_chief(self.strategy)
    run = config.run
    distribute.check_batch_divisible(config.replay.batch_size, self.strategy)
    # The environments before the logdir: an unknown task or a missing package must stop the run
    # before the logdir is created or touched (a run.json of a typo would block the next run).
    self.env = envs_lib.make_batched_env(env_name, config, run.envs, run.seed, run.parallel_envs)
    try:
      if self.chief:
        self.logdir = prepare_logdir(logdir, config, env_name)
      else:
        _, index, _ = distribute.tf_config_task()
        self.logdir = prepare_logdir(pathlib.Path(logdir) / f"worker-{index}", config, env_name)
    except BaseException:
      self.env.close()
      raise
    _log.info("precision: %s", set_precision(run.precision, run.strategy))
    tf.keras.utils.set_random_seed(run.seed)  # Python, NumPy and TensorFlow (weight initialisation).
    self.batch_size = config.replay.batch_size
    self.batch_length = config.replay.batch_length
    time_step_spec, action_spec = specs_of(self.env)
    with self.strategy.scope():
      self.agent = DreamerAgent(time_step_spec, action_spec, config, seed=run.seed)
      self.counters = Counters()
    self.replay = SequenceReplayBuffer(
      step_spec(self.env.observation_spec(), self.env.action_spec()),
      batch_size=run.envs,
      capacity=config.replay.capacity,
      seed=run.seed,
    )
    self.observer = DreamerStepObserver(self.replay)
    self.reverb = None  # --replay=reverb: actors (python -m dreamer_tf.actor) collect; see docs/reverb.md.
    if config.replay.backend == "reverb":
      from dreamer_tf.replay.reverb_replay import ReverbLearner

      self.reverb = ReverbLearner(config, self.replay.data_spec, self.agent, self.logdir / "reverb")
      _log.info(
        "Reverb replay at %s: start actors with --reverb_address=HOST:%s",
        self.reverb.address,
        self.reverb.address.rsplit(":", 1)[-1],
      )
    self.checkpointer = distribute.DistributedCheckpointer(
      self.strategy, pathlib.Path(logdir) / "checkpoints", keep=2, agent=self.agent, counters=self.counters
    )
    self.logger = Logger(self.logdir, step=lambda: int(self.counters.agent_steps.numpy()))
    self._train_fn = distribute.distributed_train_fn(self.strategy, self.agent, run.jit_compile)
    self._report_fn = tf.function(self._report)
    self._dataset = None
    self._nonfinite_streak = 0
    self._nonfinite_total = 0
    self._last_batch = None
    self._metrics = []
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
      _log.info(
        "Restored %s at step %d (%d updates, replay %d steps)",
        self.restored_from,
        self.agent_steps,
        self.updates,
        self.replay.size if self.reverb is None else self.reverb.stats()["items"] * self.reverb.settings.stride,
      )
    return self.restored_from

  def save(self):
    return self.checkpointer.save(self.agent_steps, extra_save_fns=self._replay_payload())

  def _replay_payload(self) -> dict:
    if self.reverb is not None:
      return {"reverb": self.reverb.checkpoint}
    return {"replay": self.replay.save}

  @property
  def agent_steps(self) -> int:
    return int(self.counters.agent_steps.numpy())

  @property
  def updates(self) -> int:
    return int(self.agent.train_step_counter.numpy())

  # Training.

  def updates_due(self) -> int:
    """Updates the train ratio allows at the current step, minus those done."""
    start = int(self.counters.train_start_step.numpy())
    if start < 0:
      return 0
    replayed_per_update = self.batch_size * self.batch_length
    allowed = cpu_hint.allowed_updates(self.agent_steps - start, self.config.run.train_ratio, replayed_per_update)
    return max(0, allowed - self.updates_since_start())

  def updates_since_start(self) -> int:
    return self.updates - int(self.counters.train_start_updates.numpy())

  def achieved_ratio(self) -> float:
    steps = self.agent_steps - int(self.counters.train_start_step.numpy())
    return self.updates_since_start() * self.batch_size * self.batch_length / max(1, steps)

  @property
  def training_started(self) -> bool:
    """Whether the random prefill is over (checkpointed: a resumed run does not prefill again)."""
    return int(self.counters.train_start_step.numpy()) >= 0

  def _ready_to_train(self) -> bool:
    return self.replay.size >= prefill_steps(self.config) and self.replay.stream_length >= self.batch_length

  def train_once(self):
    if self._dataset is None:
      if self.reverb is not None:
        dataset = self.reverb.dataset()
      else:
        dataset = self.replay.as_dataset(self.batch_size, self.batch_length)
      self._dataset = iter(distribute.distribute_dataset(self.strategy, dataset))
    batch = next(self._dataset)
    info = self._train_fn(batch)
    self._metrics.append(info.extra)
    if self.strategy.num_replicas_in_sync > 1:
      batch = self.strategy.experimental_local_results(batch)[0]
    self._last_batch = batch
    if float(info.extra["nonfinite"]) > 0:
      self._nonfinite_streak += 1
      self._nonfinite_total += 1
      _log.warning("Skipped an update with a non-finite loss or gradient (%d in a row)", self._nonfinite_streak)
      if self._nonfinite_streak > self.config.run.max_nonfinite_skips:
        raise NonFiniteError(
          f"training stopped: {self._nonfinite_streak} consecutive updates had non-finite losses or gradients "
          f"(run.max_nonfinite_skips={self.config.run.max_nonfinite_skips}); the last checkpoint in "
          f"{self.logdir / 'checkpoints'} is untouched; lower the learning rates or check the environment's "
          "rewards and observations"
        )
    else:
      self._nonfinite_streak = 0
    return info

  def _report(self, batch):
    data = self.agent.preprocess(batch)
    data = tf.nest.map_structure(lambda x: x[:4], data)
    seed = tf.constant([7, 11], tf.int64)
    predictions = self.agent.world_model.open_loop(data, seed, context=min(5, self.batch_length // 2))
    videos = {}
    for key, pred in predictions.items():
      truth = tf.cast(data["obs"][key], tf.float32) / 255.0
      error = (pred - truth + 1.0) / 2.0
      videos[key] = tf.concat([truth, pred, error], 2)  # real | predicted | error, side by side
    return videos

  def run(self, steps: int | None = None, signals: checkpointer_lib.SignalHandler | None = None):
    """Trains until ``steps`` agent steps (default ``config.run.steps``) or a signal."""
    run = self.config.run
    total = int(steps if steps is not None else run.steps)
    if self.reverb is not None:
      return self._run_reverb(total, signals)
    policy = py_tf_eager_policy.PyTFEagerPolicy(self.agent.collect_policy, use_tf_function=True, batch_time_steps=False)
    tracker = envs_lib.EpisodeTracker(run.envs)
    recorder = EpisodeVideoRecorder()
    finished = []
    collected = [0]

    def on_transition(transition):
      # Every env.step() of every environment is an agent step, the reset step after LAST included
      # (PyDriver's max_steps skips those), and every TimeStep reaches the episode tracker.
      collected[0] += run.envs
      finished.extend(tracker.update(transition[2]))
      frames = recorder.add(transition[2])
      if frames is not None:
        self.logger.video("episode/video", frames)

    driver = py_driver.PyDriver(
      self.env, policy, observers=[self.observer], transition_observers=[on_transition], max_steps=run.envs
    )
    # The 2023 code's prefill: a uniformly random policy until replay holds prefill_steps(config).
    # Seeded by the step, so that a run stopped during the prefill does not repeat its actions.
    random_policy = random_py_policy.RandomPyPolicy(
      self.env.time_step_spec(), self.env.action_spec(), seed=run.seed + self.agent_steps
    )
    prefill_driver = py_driver.PyDriver(
      self.env, random_policy, observers=[self.observer], transition_observers=[on_transition], max_steps=run.envs
    )
    if not self.training_started:
      _log.info("Prefill: a random policy collects until replay holds %d steps", prefill_steps(self.config))
    self.observer.reset()
    time_step = self.env.reset()
    tracker.update(time_step)
    policy_state = policy.get_initial_state(run.envs)
    progress = ProgressBar(total, self.agent_steps)
    schedule = _Schedule.start(self.agent_steps)
    last_return = None
    try:
      while self.agent_steps < total and not self._stop_requested(signals):
        if self.training_started:
          time_step, policy_state = driver.run(time_step, policy_state)
        else:
          time_step, _ = prefill_driver.run(time_step, ())
        self.counters.agent_steps.assign_add(collected[0])
        schedule.steps += collected[0]
        collected[0] = 0
        for stats in finished:
          self.counters.episodes.assign_add(1)
          last_return = stats["return"]
          row = {f"episode/{k}": v for k, v in stats.items() if k != "env"}
          self.logger.episode(self.agent_steps, row)
        finished.clear()
        if not self.training_started and self._ready_to_train():
          self.counters.train_start_step.assign(self.agent_steps)
          self.counters.train_start_updates.assign(self.updates)
        due = self.updates_due()
        if due:
          start = time.time()
          for _ in range(due):
            self.train_once()
          elapsed = time.time() - start
          schedule.add_training(due, elapsed)
          self._log_cpu_hint(due, elapsed, total)
        progress.update(self.agent_steps, fps=schedule.fps(), last_return=last_return)
        if (
          run.video_every and self.agent_steps - schedule.last_video >= run.video_every and self._last_batch is not None
        ):
          self._write_videos()
          recorder.arm()
          schedule.last_video = self.agent_steps
        self._periodic(schedule)
    finally:
      progress.close()  # An exception (e.g. NonFiniteError) skips the final save below.
    return self._finish(schedule)

  def _log_cpu_hint(self, updates: int, seconds: float, total: int) -> None:
    """Logs the CPU hint (dreamer_tf/training/cpu_hint.py) once the first updates are timed."""
    per_update = self._update_timer.add(updates, seconds) if self._update_timer is not None else None
    if per_update is None:
      return
    remaining = cpu_hint.remaining_updates(
      total,
      int(self.counters.train_start_step.numpy()),
      self.updates_since_start(),
      self.config.run.train_ratio,
      self.batch_size * self.batch_length,
    )
    _log.info(cpu_hint.hint_line(cpu_hint.model_size(self.config.model), per_update, remaining, total))

  def _run_reverb(self, total: int, signals=None):
    """Trains on the actors' data in Reverb until ``total`` agent steps (all actors) or a signal.

    The rate limiter of the Reverb table holds the train ratio (docs/reverb.md): the dataset
    waits while the learner is ahead. Agent steps are estimated as ``inserts * stride``.
    """
    self.reverb.push(force=True)
    progress = ProgressBar(total, self.agent_steps)
    schedule = _Schedule.start(self.agent_steps)
    try:
      while self.agent_steps < total and not self._stop_requested(signals):
        start = time.time()
        try:
          self.train_once()
          schedule.add_training(1, time.time() - start)
        except (StopIteration, tf.errors.OutOfRangeError, tf.errors.DeadlineExceededError):
          self._dataset = None  # No sample allowed within the timeout (no actors yet): poll again.
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

  def _periodic(self, schedule: _Schedule):
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
    due = now - schedule.last_ckpt >= run.checkpoint_every_secs and not self._nonfinite_streak
    if distribute.any_worker(self.strategy, due):
      self.save()
      schedule.last_ckpt = time.time()

  def _finish(self, schedule: _Schedule) -> int:
    self._write_logs(schedule)
    self.save()
    self.logger.flush()
    return self.agent_steps

  def _write_logs(self, schedule: _Schedule):
    """Writes the mean training metrics and the throughput since the last write."""
    if self._metrics:
      keys = self._metrics[0].keys()
      means = {k: float(np.mean([m[k].numpy() for m in self._metrics])) for k in keys}
      self.logger.scalars(means, prefix="train")
      self._metrics = []
    if self.reverb is not None:
      stats = self.reverb.stats()
      size, ratio = stats["items"], stats["achieved_ratio"]
    else:
      size = self.replay.size
      ratio = self.achieved_ratio() if self.counters.train_start_step.numpy() >= 0 else 0.0
    replayed = self.batch_size * self.batch_length
    self.logger.scalars(
      {
        "fps/policy": schedule.fps(),
        "fps/train": schedule.updates * replayed / schedule.train_secs if schedule.updates else 0.0,
        "replay/size": size,
        "train/updates": self.updates,
        "train/nonfinite_skips": self._nonfinite_total,
        "train/achieved_ratio": ratio,
        "episodes": int(self.counters.episodes.numpy()),
      }
    )
    self.logger.write(self.agent_steps)
    schedule.reset_rates()

  def _write_videos(self):
    videos = self._report_fn(self._last_batch)
    for key, video in videos.items():
      self.logger.video(f"openloop/{key}", (video.numpy() * 255).astype(np.uint8))
    self.logger.write(self.agent_steps)

  def eval_policy(self) -> DreamerPolicy:
    """A fresh evaluation policy: it samples from the actor, or takes its mode with ``run.eval_greedy``.

    Sampling is the default, as in the 2023 code (its ``eval`` mode samples). The policy's random
    stream (seed ``run.seed + 3``) is the same at every evaluation.
    """
    agent = self.agent
    return DreamerPolicy(
      agent.time_step_spec,
      agent.action_spec,
      agent.world_model,
      agent.actor_critic,
      greedy=bool(self.config.run.eval_greedy),
      seed=self.config.run.seed + 3,
      name="eval_policy",
    )

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
    """Exports the greedy policy as a SavedModel under ``saved_models/<env>``."""
    from dreamer_tf import export

    name = self.env_name.replace("/", "_")
    return export.export_policy(
      self.agent, self.config, self.env_name, self.logdir / "saved_models" / name, train_step=self.updates, keep=5
    )

  def close(self):
    self.logger.close()
    self.env.close()
    if self.reverb is not None:
      self.reverb.close()
