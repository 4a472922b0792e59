"""Distributed actors (``python -m dreamer_tf.actor``) feeding a learner through Reverb, on 127.0.0.1."""

import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import numpy as np
import portpicker
import pytest
import reverb
import tensorflow as tf

from dreamer_tf import envs as envs_lib
from dreamer_tf.agent.dreamer_agent import DreamerAgent
from dreamer_tf.main import resolve_config
from dreamer_tf.replay import step_spec
from dreamer_tf.replay.reverb_replay import (
  DATA_TABLE,
  ReverbReplay,
  VariableContainer,
  policy_variables,
  variable_spec,
)
from dreamer_tf.training.loop import specs_of

REPO = pathlib.Path(__file__).resolve().parent.parent
ENV = "gym_CartPole-v1"  # Short episodes (often < batch_length): windows cross episode boundaries.
PRESETS = ["debug"]


def start_actor(address, seed, overrides, *extra, log_path):
  env = dict(os.environ, PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES="")
  args = [sys.executable, "-m", "dreamer_tf.actor", f"--env={ENV}", f"--configs={','.join(PRESETS)}"]
  args += [f"--override={o}" for o in overrides]
  args += [f"--reverb_address={address}", f"--seed={seed}", "--wait_for_weights_secs=120", *extra]
  log = open(log_path, "w")
  return subprocess.Popen(args, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)


def stop_actor(proc, timeout=60):
  if proc.poll() is None:
    proc.send_signal(signal.SIGTERM)
  try:
    return proc.wait(timeout)
  except subprocess.TimeoutExpired:
    proc.kill()
    proc.wait()
    return None


class Learner:
  """The learner side in the test process: an agent of the actors' config, its server and container."""

  def __init__(self, overrides, port, checkpoint_dir=None):
    self.config = resolve_config(ENV, PRESETS, overrides)
    env = envs_lib.make_env(ENV, self.config, seed=0)
    self.data_spec = step_spec(env.observation_spec(), env.action_spec())
    time_step_spec, action_spec = specs_of(env)
    env.close()
    self.agent = DreamerAgent(time_step_spec, action_spec, self.config, seed=0)
    self.variables = policy_variables(self.agent)
    self.port = port
    self.checkpoint_dir = checkpoint_dir
    self.start()

  def start(self):
    self.server, self.address = ReverbReplay.start_server(
      self.config,
      self.data_spec,
      self.port,
      variable_spec=variable_spec(self.variables),
      checkpoint_dir=self.checkpoint_dir,
    )
    self.container = VariableContainer(self.address)

  def push(self, version):
    self.container.push(self.variables, version)

  def table_info(self):
    return reverb.Client(self.address).server_info()[DATA_TABLE]


def test_two_actors_feed_the_learner_and_pick_up_new_weights(tmp_path):
  # Train ratio 4 with T = 16 and stride 8: 2 samples per insert, so one update of 4 windows lets the
  # actors write 2 more windows (16 steps); the rate limiter keeps the actors near the learner.
  overrides = ["run.train_ratio=4", "run.train_start=32", "run.log_every_secs=2"]
  learner = Learner(overrides, portpicker.pick_unused_port())
  config = learner.config
  B, T = config.replay.batch_size, config.replay.batch_length
  learner.push(version=1)
  actors = [
    start_actor(
      f"127.0.0.1:{learner.port}", seed, overrides, "--pull_every_steps=20", log_path=tmp_path / f"a{seed}.log"
    )
    for seed in (1, 2)
  ]
  try:
    dataset = ReverbReplay.as_dataset(
      learner.address, DATA_TABLE, B, T, learner.data_spec, with_info=True, rate_limiter_timeout_ms=150_000
    )
    local_spec = learner.agent.training_data_spec
    train = tf.function(learner.agent.train)
    seen = set()  # (actor_id, policy_version) pairs in trained batches.
    deadline = time.monotonic() + 150
    updates = 0
    for step, info in dataset:
      assert set(step) == set(local_spec) and step["obs"]["vector"].shape == (B, T, 4)
      assert bool(tf.reduce_all(step["is_first"][:, 0]))
      loss = train(step)
      assert np.isfinite(loss.loss.numpy())
      updates += 1
      ids, versions = info["actor_id"].numpy(), info["policy_version"].numpy()
      assert ((versions >= 1) & (versions <= 2)).all()  # Actors act only with pushed weights.
      seen.update(zip(ids.ravel().tolist(), versions.ravel().tolist()))
      if updates == 3:
        learner.push(version=2)  # New weights; the actors pull them within 20 steps.
      if {(1, 2), (2, 2)} <= seen or time.monotonic() > deadline:
        break
    assert {1, 2} <= {a for a, _ in seen}, f"trained on data of actors {seen}"
    assert {(1, 2), (2, 2)} <= seen, f"actors did not write data with the new weights: {seen}"
    rate = learner.table_info().rate_limiter_info
    # The rate limiter held the ratio: samples_per_insert = 4 * 8 / 16 = 2 and the error
    # inserts * 2 - samples stays in its allowed range (the dataset samples a few batches ahead).
    assert rate.samples_per_insert == 2.0
    samples, inserts = rate.sample_stats.completed, rate.insert_stats.completed
    assert samples >= updates * B
    assert rate.min_diff <= inserts * 2.0 - samples <= rate.max_diff
  finally:
    codes = [stop_actor(p) for p in actors]
    learner.server.stop()
  logs = [(tmp_path / f"a{seed}.log").read_text() for seed in (1, 2)]
  for seed, code, log in zip((1, 2), codes, logs):
    assert code == 0, log[-3000:]
    assert f"actor {seed}: pulled policy weights version 1" in log
    assert f"actor {seed}: pulled policy weights version 2" in log
    assert f"actor {seed}: episode 1 return" in log
    assert f"done: actor {seed}," in log


def consume(learner, seconds, until=lambda: False):
  """Samples batches (as a learner would) for up to ``seconds``, so the rate limiter lets actors write."""
  config = learner.config
  dataset = ReverbReplay.as_dataset(
    learner.address,
    DATA_TABLE,
    config.replay.batch_size,
    config.replay.batch_length,
    learner.data_spec,
    with_info=True,
    rate_limiter_timeout_ms=2000,
  )
  versions = set()
  deadline = time.monotonic() + seconds
  while time.monotonic() < deadline and not until():
    try:  # The dataset ends when no data arrives for 2 s; start it again.
      for _, info in dataset:
        versions.update(info["policy_version"].numpy().ravel().tolist())
        if time.monotonic() > deadline or until():
          break
    except tf.errors.OpError:
      pass
  return versions


def test_actor_reconnects_to_a_restarted_learner_and_stops_after_steps(tmp_path):
  overrides = ["run.train_ratio=4", "run.train_start=0", "run.log_every_secs=1"]
  learner = Learner(overrides, portpicker.pick_unused_port(), checkpoint_dir=tmp_path / "reverb")
  learner.push(version=1)
  args = ["--pull_every_steps=50", "--steps=400", "--reconnect_secs=60"]
  actor = start_actor(f"127.0.0.1:{learner.port}", 3, overrides, *args, log_path=tmp_path / "a.log")
  try:
    consume(learner, 90, until=lambda: learner.table_info().rate_limiter_info.insert_stats.completed >= 6)
    before = learner.table_info().current_size
    assert before >= 6, (tmp_path / "a.log").read_text()[-3000:]
    ReverbReplay.checkpoint(learner.address)
    learner.server.stop()  # The learner goes away for longer than the actor's flush timeout (5 s) ...
    time.sleep(8)
    learner.start()  # ... and comes back on the same port with its tables from the checkpoint.
    restored = learner.table_info().current_size
    assert restored >= before
    learner.push(version=2)
    versions = consume(learner, 120, until=lambda: actor.poll() is not None)
    code = actor.wait(30)
  finally:
    stop_actor(actor)
    log = (tmp_path / "a.log").read_text()
    learner.server.stop()
  assert code == 0, log[-3000:]
  assert "reconnected to" in log and "pulled policy weights version 2" in log, log[-3000:]
  assert 2 in versions, versions  # The actor wrote data with the new weights to the restarted server.
  # A collect call that crosses an episode end also takes the reset step (PyDriver does not count
  # boundary transitions), so the last call may end one step past --steps.
  done = re.search(r"done: actor 3, (\d+) agent steps", log)
  assert done and 400 <= int(done.group(1)) <= 401, log[-3000:]


def test_actor_without_server_fails_fast_with_one_line(tmp_path):
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "dreamer_tf.actor",
      f"--env={ENV}",
      "--configs=debug",
      f"--reverb_address=127.0.0.1:{portpicker.pick_unused_port()}",
      "--reconnect_secs=2",
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert proc.returncode == 2
  assert "error: no Reverb server answered" in proc.stderr
  assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args", [[], ["--reverb_address=127.0.0.1:1", "--pull_every_steps=0"]])
def test_actor_flag_errors(args):
  proc = subprocess.run(
    [sys.executable, "-m", "dreamer_tf.actor", f"--env={ENV}", "--configs=debug", *args],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert proc.returncode == 2 and "error:" in proc.stderr and "Traceback" not in proc.stderr


def test_learner_keeps_training_when_an_actor_dies(tmp_path):
  overrides = ["run.train_ratio=4", "run.train_start=32", "run.log_every_secs=2"]
  learner = Learner(overrides, portpicker.pick_unused_port())
  config = learner.config
  B, T = config.replay.batch_size, config.replay.batch_length
  learner.push(version=1)
  actors = {
    seed: start_actor(
      f"127.0.0.1:{learner.port}", seed, overrides, "--pull_every_steps=20", log_path=tmp_path / f"a{seed}.log"
    )
    for seed in (1, 2)
  }
  try:
    dataset = ReverbReplay.as_dataset(
      learner.address, DATA_TABLE, B, T, learner.data_spec, with_info=True, rate_limiter_timeout_ms=150_000
    )
    train = tf.function(learner.agent.train)
    seen_after_kill, updates_after_kill, killed = set(), 0, False
    deadline = time.monotonic() + 150
    seen = set()
    for step, info in dataset:
      assert np.isfinite(train(step).loss.numpy())
      ids = set(info["actor_id"].numpy().ravel().tolist())
      seen |= ids
      if not killed and {1, 2} <= seen:
        actors[1].kill()  # SIGKILL: the actor dies without closing its writers.
        actors[1].wait(30)
        killed = True
        inserts_at_kill = learner.table_info().rate_limiter_info.insert_stats.completed
      elif killed:
        updates_after_kill += 1
        seen_after_kill |= ids
      if updates_after_kill >= 6 or time.monotonic() > deadline:
        break
    assert killed, f"both actors never wrote: {seen}"
    # The learner went on training on the surviving actor's new data.
    assert updates_after_kill >= 6
    assert learner.table_info().rate_limiter_info.insert_stats.completed > inserts_at_kill
    assert 2 in seen_after_kill
  finally:
    codes = {seed: stop_actor(p) for seed, p in actors.items()}
    learner.server.stop()
  assert codes[2] == 0, (tmp_path / "a2.log").read_text()[-3000:]


def _queue_server(config, data_spec, variables):
  """The run's tables with the data table as a FIFO queue, so that its items come back in write order."""
  from dreamer_tf.replay.reverb_replay import VARIABLE_TABLE, ReverbSettings, table_spec

  settings = ReverbSettings.from_config(config)
  _, variable_table = ReverbReplay.make_tables(config, data_spec, variable_spec(variables))
  data = reverb.Table.queue(DATA_TABLE, 10_000, signature=table_spec(data_spec, settings.batch_length))
  server = reverb.Server([data, variable_table], port=None)
  assert variable_table.name == VARIABLE_TABLE
  return server, f"127.0.0.1:{server.port}"


def _written_actions(address, settings, items):
  """The action stream of a one-env actor, rebuilt from its first ``items`` windows (one every stride steps)."""
  client = reverb.Client(address)
  windows = [
    sample.data["action"]
    for sample in client.sample(DATA_TABLE, items, emit_timesteps=False, unpack_as_table_signature=True)
  ]
  return np.concatenate([windows[0]] + [w[-settings.stride :] for w in windows[1:]])


def test_actors_prefill_with_a_random_policy_until_the_table_holds_the_prefill():
  from tf_agents.policies import random_py_policy

  from dreamer_tf.actor import Actor
  from dreamer_tf.replay.reverb_replay import ReverbSettings

  env_name = "gym_Pendulum-v1"  # Continuous actions: a random action sequence cannot match by chance.
  config = resolve_config(env_name, PRESETS, ["run.train_start=0", "run.envs=1"])
  settings = ReverbSettings.from_config(config)
  first = Actor(config, env_name, "pending", seed=5)
  server, address = _queue_server(config, first.data_spec, first.variables)
  try:
    first.address = address
    VariableContainer(address).push(first.variables, version=1)
    first.run(steps=120, wait_for_weights_secs=60, reconnect_secs=30)
    # The learner may sample once the table holds min_size_to_sample windows (4 for batch 4, train_start 0):
    # they take T + 3 * stride steps, and the actor looks at the table every stride steps.
    least = settings.batch_length + (settings.min_size_to_sample - 1) * settings.stride
    assert least <= first.random_steps <= least + 3 * settings.stride, first.random_steps
    env = first.env
    random_policy = random_py_policy.RandomPyPolicy(env.time_step_spec(), env.action_spec(), seed=5)
    time_step = env.reset()  # Only its shape matters: the random policy ignores observations.
    expected = np.concatenate([random_policy.action(time_step).action for _ in range(120)])
    items = (120 - settings.batch_length) // settings.stride + 1
    actions = _written_actions(address, settings, items)
    prefill = first.random_steps
    np.testing.assert_array_equal(actions[:prefill], expected[:prefill])  # The random prefill ...
    assert not np.any(np.all(actions[prefill:] == expected[prefill : len(actions)], axis=-1))  # ... then the policy.
    # An actor started (or restarted) after the prefill acts with the policy from its first step.
    second = Actor(config, env_name, address, seed=6)
    try:
      second.run(steps=40, wait_for_weights_secs=60, reconnect_secs=30)
      assert second.random_steps == 0 and second.steps == 40
    finally:
      second.close()
  finally:
    first.close()
    server.stop()
