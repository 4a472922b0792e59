"""A distributed actor: ``python -m dreamer_tf.actor --env=NAME --reverb_address=HOST:PORT``.

Runs the collect policy of a DreamerAgent built from the same config as the learner's on its own
environments and writes overlapping windows of steps (across episode boundaries) into the
learner's Reverb server (``--replay=reverb``, docs/reverb.md)::

  python -m dreamer_tf.actor --env=atari100k_pong --configs=debug --reverb_address=learner:8000 \\
      --seed=1 --pull_every_steps=1000

The actor waits (``--wait_for_weights_secs``) for the learner's first push of the policy weights,
pulls new weights every ``--pull_every_steps`` agent steps, retries with backoff for
``--reconnect_secs`` when the server goes away (a restarted learner restores its tables from its
Reverb checkpoint), and logs its steps, episode returns and weights version. It accepts the
learner's config flags (``--configs``, ``--override``, ``--envs``, ...); ``--steps`` bounds the
actor's own agent steps (default: until stopped by SIGINT/SIGTERM).
"""

from __future__ import annotations

import functools
import logging
import sys
import time

from absl import app, flags

from dreamer_tf import main as main_lib  # Defines the learner's config flags, shared by the actor.

FLAGS = flags.FLAGS

flags.DEFINE_integer("actor_id", None, "Id written with this actor's data (default: --seed).")
flags.DEFINE_integer("pull_every_steps", 1000, "Agent steps between pulls of the learner's policy weights.")
flags.DEFINE_integer(
  "stride", 0, "Steps between the starts of written windows (default replay.reverb_stride, else batch_length // 2)."
)
flags.DEFINE_float("wait_for_weights_secs", 600.0, "How long to wait for the learner's first weights.")
flags.DEFINE_float("reconnect_secs", 300.0, "How long to retry a lost Reverb server before giving up.")

_log = logging.getLogger(__name__)


class Actor:
  """Environments, a DreamerAgent's collect policy and the Reverb writer of one actor process.

  Collection is the :class:`~dreamer_tf.training.collector.Collector` of local training, with a
  :class:`~dreamer_tf.replay.reverb_replay.ReverbStepObserver` as its observer. Like local
  training, an actor starts with a uniformly random policy (the 2023 code's prefill) until the
  data table holds the prefill's windows, counted over all actors (``min_size_to_sample`` items,
  :class:`~dreamer_tf.replay.reverb_replay.ReverbSettings`), then acts with the pulled weights;
  an actor started later, or restarted, finds the table full enough and does not prefill again.

  Args:
    config: The resolved config (the learner's).
    env_name: The ``--env`` name.
    address: ``HOST:PORT`` of the learner's Reverb server.
    seed: Seed of the environments and the policy (default ``run.seed``).
    actor_id: Written into every step's ``info`` (default: the seed).
    stride: Item stride (see :class:`~dreamer_tf.replay.reverb_replay.ReverbSettings`).
    flush_timeout_s: See :class:`~dreamer_tf.replay.reverb_replay.ReverbStepObserver`.
  """

  def __init__(self, config, env_name, address, *, seed=None, actor_id=None, stride=None, flush_timeout_s=5.0):
    from dreamer_tf import envs as envs_lib
    from dreamer_tf.agent.dreamer_agent import DreamerAgent
    from dreamer_tf.replay import reverb_replay, step_spec

    self._rr = reverb_replay
    run = config.run
    self.config = config
    self.address = address
    self.seed = int(run.seed if seed is None else seed)
    self.actor_id = int(self.seed if actor_id is None else actor_id)
    self.settings = reverb_replay.ReverbSettings.from_config(config, stride)
    self.num_envs = int(run.envs)
    self.env = envs_lib.make_batched_env(env_name, config, self.num_envs, self.seed, run.parallel_envs)
    self.agent = DreamerAgent(*envs_lib.tensor_specs(self.env), config, seed=self.seed)
    self.variables = reverb_replay.policy_variables(self.agent)
    self.data_spec = step_spec(self.env.observation_spec(), self.env.action_spec())
    self._flush_timeout_s = flush_timeout_s
    self._client = None
    self.container = None
    self.observer = None
    self.collector = None
    self.version = -1
    self.steps = 0
    self.random_steps = 0  # Steps of the random prefill taken by this actor.
    self.episodes = 0
    self.reconnects = 0
    self._prefilled = False
    self._prefill_checked_at = None

  def connect(self, timeout_s: float) -> None:
    """Waits up to ``timeout_s`` for the server, then (re)creates the writer and the container."""
    import reverb

    from dreamer_tf.training.collector import Collector

    rr = self._rr
    rr.ReverbReplay.wait_for_server(self.address, timeout_s, tables=(rr.DATA_TABLE, rr.VARIABLE_TABLE))
    client = self._client = reverb.Client(self.address)
    self.container = rr.VariableContainer(client, rr.VARIABLE_TABLE)
    if self.observer is None:
      self.observer = rr.ReverbStepObserver(
        client,
        rr.DATA_TABLE,
        self.settings.batch_length,
        self.settings.stride,
        self.num_envs,
        data_spec=self.data_spec,
        actor_id=self.actor_id,
        flush_timeout_s=self._flush_timeout_s,
      )
      self.collector = Collector(self.env, self.agent.collect_policy, self.observer, seed=self.seed)
    else:
      self.observer.reconnect(client)

  def prefill_done(self) -> bool:
    """Whether the table holds the prefill's windows (or the learner has sampled): asked every stride steps."""
    if self.config.run.prefill == "policy":  # The current generation: the agent acts from the first step.
      return True
    if self._prefilled or (
      self._prefill_checked_at is not None and self.steps - self._prefill_checked_at < self.settings.stride
    ):
      return self._prefilled
    self._prefill_checked_at = self.steps
    try:
      limiter = self._client.server_info(timeout=5)[self._rr.DATA_TABLE].rate_limiter_info
    except Exception:  # The server is gone: keep prefilling; the reconnect logic deals with it.
      return False
    inserts, samples = int(limiter.insert_stats.completed), int(limiter.sample_stats.completed)
    self._prefilled = inserts >= self.settings.min_size_to_sample or samples > 0
    if self._prefilled:
      _log.info(
        "actor %d: the table holds the prefill (%d items); acting with the policy from step %d",
        self.actor_id,
        inserts,
        self.steps,
      )
    return self._prefilled

  def pull(self, timeout_s: float | None = None) -> int:
    """Assigns the learner's latest policy weights; returns their version."""
    version = self.container.update(self.variables, timeout_s=timeout_s)
    self.observer.policy_version = version
    if version != self.version:
      _log.info("actor %d: pulled policy weights version %d at step %d", self.actor_id, version, self.steps)
    self.version = version
    return version

  def _reconnect(self, reconnect_secs: float, wait_for_weights_secs: float, reason) -> None:
    _log.warning(
      "actor %d: lost the Reverb server (%s); reconnecting for up to %.0f s", self.actor_id, reason, reconnect_secs
    )
    self.connect(reconnect_secs)
    self.pull(wait_for_weights_secs)
    self.reconnects += 1
    _log.info("actor %d: reconnected to %s", self.actor_id, self.address)

  def _server_alive(self) -> bool:
    try:
      self._client.server_info(timeout=5)
      return True
    except Exception:
      return False

  def run(
    self,
    steps: int | None = None,
    pull_every_steps: int = 1000,
    wait_for_weights_secs: float = 600.0,
    reconnect_secs: float = 300.0,
    log_every_secs: float = 30.0,
    stop=None,
  ) -> int:
    """Collects until ``steps`` agent steps (None: forever) or ``stop()`` returns True.

    Returns:
      The agent steps taken.

    Raises:
      UserError: No server within ``reconnect_secs``, or no weights within ``wait_for_weights_secs``.
    """
    stop = stop or (lambda: False)
    self.connect(reconnect_secs)
    self.observer.abort = stop  # A stop request ends a wait on the rate limiter.
    self.pull(wait_for_weights_secs)
    if not self.prefill_done():
      _log.info(
        "actor %d: prefill: a random policy collects until the table holds %d items",
        self.actor_id,
        self.settings.min_size_to_sample,
      )
    self.collector.start(self.steps)
    last_pull, last_log, returns = self.steps, time.time(), []
    while (steps is None or self.steps < steps) and not stop():
      random = not self.prefill_done()
      collected = self.collector.collect(random=random)
      self.steps += collected.steps
      self.random_steps += collected.steps if random else 0
      for stats in collected.episodes:
        self.episodes += 1
        returns.append(stats["return"])
        _log.info(
          "actor %d: episode %d return %.2f length %d (step %d)",
          self.actor_id,
          self.episodes,
          stats["return"],
          stats["length"],
          self.steps,
        )
      if self.observer.disconnected is not None:
        self._reconnect(reconnect_secs, wait_for_weights_secs, self.observer.disconnected)
        last_pull = self.steps
      elif self.steps - last_pull >= pull_every_steps:
        if self._server_alive():
          self.pull(wait_for_weights_secs)
        else:
          self._reconnect(reconnect_secs, wait_for_weights_secs, "no answer to a weights pull")
        last_pull = self.steps
      now = time.time()
      if now - last_log >= log_every_secs:
        mean = sum(returns) / len(returns) if returns else float("nan")
        _log.info(
          "actor %d: %d steps, %d episodes, mean return %.2f, weights version %d, %d items written, %d dropped",
          self.actor_id,
          self.steps,
          self.episodes,
          mean,
          self.version,
          self.observer.items_created,
          self.observer.steps_dropped,
        )
        returns, last_log = [], now
    if not stop():
      try:
        self.observer.flush(timeout_ms=int(self._flush_timeout_s * 1000))
      except Exception as e:  # Rate-limited or gone: the pending items are dropped.
        _log.warning("actor %d: %s while sending the last items", self.actor_id, type(e).__name__)
    return self.steps

  def close(self) -> None:
    if self.observer is not None:
      self.observer.close()
    if self.container is not None:
      self.container.close()
    self.env.close()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.getLogger().setLevel(logging.INFO)
  from dreamer_tf.errors import UserError

  try:
    _main()
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


def _main():
  from dreamer_tf.envs import parse_name
  from dreamer_tf.errors import UserError
  from dreamer_tf.training.checkpointer import SignalHandler

  parse_name(FLAGS.env)
  if FLAGS.pull_every_steps < 1:
    raise UserError(f"--pull_every_steps must be positive, got {FLAGS.pull_every_steps}")
  flag_values = {name: FLAGS[name].value for name in main_lib._FLAG_KEYS}
  config = main_lib.resolve_config(FLAGS.env, FLAGS.configs, FLAGS.override, flag_values)
  address = config.replay.reverb_address
  if not address:
    raise UserError("the actor needs the learner's Reverb server: pass --reverb_address=HOST:PORT")
  steps = int(FLAGS.steps) if FLAGS.steps is not None else None
  actor = Actor(config, FLAGS.env, address, actor_id=FLAGS.actor_id, stride=FLAGS.stride or None)
  _log.info(
    "actor %d: %s, %d envs, seed %d, writing windows of %d steps every %d steps to %s",
    actor.actor_id,
    FLAGS.env,
    actor.num_envs,
    actor.seed,
    actor.settings.batch_length,
    actor.settings.stride,
    address,
  )
  try:
    with SignalHandler() as signals:
      done = actor.run(
        steps,
        pull_every_steps=FLAGS.pull_every_steps,
        wait_for_weights_secs=FLAGS.wait_for_weights_secs,
        reconnect_secs=FLAGS.reconnect_secs,
        log_every_secs=config.run.log_every_secs,
        stop=lambda: signals.requested,
      )
    print(
      f"done: actor {actor.actor_id}, {done} agent steps ({actor.random_steps} of the random prefill), "
      f"{actor.episodes} episodes, "
      f"{actor.observer.items_created} items, weights version {actor.version}, {actor.reconnects} reconnects"
    )
  finally:
    actor.close()


def run():
  """Console entry point; starts absl under TF-Agents' multiprocessing handler."""
  from tf_agents.system import system_multiprocessing

  system_multiprocessing.handle_main(functools.partial(app.run, main))


if __name__ == "__main__":
  run()
