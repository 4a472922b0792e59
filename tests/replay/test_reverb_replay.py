"""Reverb replay: rate-limiter math, windows across episode boundaries, dataset, weights, checkpoints."""

import numpy as np
import portpicker
import pytest
import reverb
import tensorflow as tf
from tf_agents.specs import array_spec
from tf_agents.trajectories import time_step as ts
from tf_agents.trajectories import trajectory

from dreamer_tf.config import load_config
from dreamer_tf.errors import UserError
from dreamer_tf.replay import SequenceReplayBuffer, step_spec
from dreamer_tf.replay.reverb_replay import (
  DATA_TABLE,
  ReverbReplay,
  ReverbSettings,
  ReverbStepObserver,
  VariableContainer,
  table_spec,
  variable_spec,
)

T = 8
OBS_SPEC = {"vector": array_spec.ArraySpec((2,), np.float64), "log_x": array_spec.ArraySpec((), np.float32)}
ACTION_SPEC = array_spec.BoundedArraySpec((), np.int64, minimum=0, maximum=3)
SPEC = step_spec(OBS_SPEC, ACTION_SPEC)


def make_config(**overrides):
  base = {"replay.batch_length": T, "run.train_start": 0}
  base.update(overrides)
  return load_config(presets=["debug"], overrides=[f"{k}={v}" for k, v in base.items()])


def driver_steps(lengths, num_steps):
  """The driver's trajectories for envs whose episodes last ``lengths[e]`` steps (FIRST..LAST).

  Step t of env e observes ``vector = [e, t]``; the transition after step t has reward ``100 e + t``
  and discount 0 for env 0 (termination) and 1 for the others (truncation).
  """
  lengths = np.asarray(lengths)
  envs = np.arange(len(lengths))
  for t in range(num_steps):
    pos, next_pos = t % lengths, (t + 1) % lengths
    step_type = np.where(pos == 0, ts.StepType.FIRST, np.where(pos == lengths - 1, ts.StepType.LAST, ts.StepType.MID))
    next_type = np.where(next_pos == 0, ts.StepType.FIRST, np.where(next_pos == lengths - 1, ts.StepType.LAST, 1))
    last_next = next_type == ts.StepType.LAST
    yield trajectory.Trajectory(
      step_type=step_type.astype(np.int32),
      observation={
        "vector": np.stack([envs, np.full_like(envs, t)], 1).astype(np.float64),
        "log_x": np.zeros(len(envs)),
      },
      action=(t % 4) * np.ones(len(envs), np.int64),
      policy_info=(),
      next_step_type=next_type.astype(np.int32),
      reward=(100 * envs + t).astype(np.float32),
      discount=np.where(last_next & (envs == 0), 0.0, 1.0).astype(np.float32),
    )


@pytest.fixture
def queue_server():
  """A server with a FIFO queue of the data table's signature: items come back in write order."""
  server = reverb.Server([reverb.Table.queue("queue", 1000, signature=table_spec(SPEC, T))], port=None)
  yield server, f"localhost:{server.port}"
  server.stop()


def drain(address, table, n):
  client = reverb.Client(address)
  assert client.server_info()[table].current_size == n
  return [s.data for s in client.sample(table, n, emit_timesteps=False, unpack_as_table_signature=True)]


def test_settings_follow_the_train_ratio():
  config = load_config(
    presets=["debug"], overrides=["run.train_ratio=512", "replay.batch_length=64", "run.train_start=1024"]
  )
  s = ReverbSettings.from_config(config, stride=32)
  # 512 replayed steps per agent step = 8 windows of 64; one insert per 32 steps -> 256 samples per insert.
  assert s.samples_per_insert == 512 * 32 / 64 == 256
  assert s.min_size_to_sample == 1024 // 32
  assert s.error_buffer == 256 * max(config.replay.batch_size, 4)
  assert s.max_size == config.replay.capacity // 32
  assert ReverbSettings.from_config(config).stride == 32  # Default: batch_length // 2.
  s.rate_limiter()  # Reverb accepts the values (error_buffer >= max(1, samples_per_insert)).
  small = ReverbSettings.from_config(make_config(**{"run.train_ratio": 1.0}), stride=1)
  assert small.samples_per_insert == 1 / T and small.error_buffer >= 1.0
  small.rate_limiter()
  with pytest.raises(UserError, match="stride"):
    ReverbSettings.from_config(config, stride=65)


def test_observer_writes_every_window_across_short_episodes(queue_server):
  _, address = queue_server
  lengths, steps, stride = [3, 5], 20, 2  # Both episode lengths are shorter than T = 8.
  observer = ReverbStepObserver(address, "queue", T, stride, num_envs=2, actor_id=7)
  for t, traj in enumerate(driver_steps(lengths, steps)):
    if t == 12:
      observer.policy_version = 3
    observer(traj)
  observer.flush(timeout_ms=10_000)
  per_env = (steps - T) // stride + 1  # Windows start at 0, 2, ..., 12.
  assert observer.items_created == 2 * per_env and observer.steps_added == 2 * steps
  items = drain(address, "queue", 2 * per_env)
  # Each stream's writer sends its items in order; the two streams' items may interleave in any order.
  keys = [(int(item["obs"]["vector"][0, 0]), int(item["obs"]["vector"][0, 1])) for item in items]
  assert sorted(keys) == [(env, start) for env in range(2) for start in range(0, steps - T + 1, stride)]
  assert [k for k in keys if k[0] == 0] == sorted(k for k in keys if k[0] == 0)
  for (env, start), item in zip(keys, items):
    t = np.arange(start, start + T)
    n = lengths[env]
    np.testing.assert_array_equal(item["obs"]["vector"][:, 0], env)
    np.testing.assert_array_equal(item["obs"]["vector"][:, 1], t)
    np.testing.assert_array_equal(item["is_first"], t % n == 0)  # Raw flags: forced only when sampled.
    np.testing.assert_array_equal(item["is_last"], t % n == n - 1)
    np.testing.assert_array_equal(item["is_terminal"], (t % n == n - 1) & (env == 0))
    np.testing.assert_array_equal(item["reward"], np.where(t % n == 0, 0, 100 * env + t - 1))
    np.testing.assert_array_equal(item["action"], t % 4)
    assert item["action"].dtype == np.int32 and item["obs"]["vector"].dtype == np.float32
    assert "log_x" not in item["obs"]
    np.testing.assert_array_equal(item["info"]["actor_id"], 7)
    np.testing.assert_array_equal(item["info"]["policy_version"], np.where(t >= 12, 3, 0))
  observer.close()


def test_observer_reads_spec_from_table_and_checks_batch(queue_server):
  _, address = queue_server
  observer = ReverbStepObserver(address, "queue", T, T, num_envs=3)
  assert observer._sink.data_spec["obs"]["vector"].is_compatible_with(tf.TensorSpec((2,), tf.float32))
  assert set(observer._sink.data_spec) == set(SPEC)
  with pytest.raises(UserError, match="num_envs"):
    observer(next(driver_steps([3, 4], 1)))
  with pytest.raises(UserError, match="stride"):
    ReverbStepObserver(address, "queue", T, 0, num_envs=1)


def test_dataset_matches_local_replay_and_forces_is_first():
  config = make_config(**{"run.train_ratio": 64.0})
  server, address = ReverbReplay.start_server(config, SPEC, stride=2)
  try:
    B = config.replay.batch_size
    settings = ReverbSettings.from_config(config, stride=2)
    # The rate limiter lets actors run min_size_to_sample + error_buffer / samples_per_insert items
    # ahead of the learner; 14 steps give 4 windows per stream, 8 items, exactly that many.
    assert settings.min_size_to_sample + settings.error_buffer / settings.samples_per_insert == 2 * B
    observer = ReverbStepObserver(address, DATA_TABLE, T, 2, num_envs=2, actor_id=1)
    for traj in driver_steps([3, 5], 14):
      observer(traj)
    observer.flush(timeout_ms=10_000)
    assert reverb.Client(address).server_info()[DATA_TABLE].current_size == 2 * B
    dataset = ReverbReplay.as_dataset(address, DATA_TABLE, B, T, SPEC, rate_limiter_timeout_ms=5000)
    local = SequenceReplayBuffer(SPEC, 2, 1000).as_dataset(B, T)
    assert dataset.element_spec == local.element_spec
    batch = next(iter(dataset))
    assert batch["is_first"].shape == (B, T) and bool(tf.reduce_all(batch["is_first"][:, 0]))
    vec = batch["obs"]["vector"].numpy()
    for i in range(B):  # Each window is consecutive steps of one stream, is_first inside where episodes start.
      env, t = vec[i, :, 0], vec[i, :, 1]
      assert (env == env[0]).all() and (np.diff(t) == 1).all()
      n = [3, 5][int(env[0])]
      np.testing.assert_array_equal(batch["is_first"][i, 1:], t[1:] % n == 0)
    with_info = ReverbReplay.as_dataset(address, DATA_TABLE, B, T, SPEC, with_info=True, rate_limiter_timeout_ms=5000)
    step, info = next(iter(with_info))
    assert info["actor_id"].shape == (B, T) and (info["actor_id"].numpy() == 1).all()
    assert set(step) == set(SPEC)
  finally:
    server.stop()


def test_variable_container_push_pull_update():
  variables = {"a_0000": tf.Variable(tf.zeros([2, 3])), "b_0000": tf.Variable(0, dtype=tf.int64)}
  config = make_config()
  server, address = ReverbReplay.start_server(config, SPEC, variable_spec=variable_spec(variables))
  try:
    container = VariableContainer(address)
    with pytest.raises(UserError, match="no policy weights"):
      container.wait(0.3)
    container.push({"a_0000": np.ones([2, 3], np.float32), "b_0000": np.int64(5)}, version=1)
    container.push({"a_0000": 2 * np.ones([2, 3], np.float32), "b_0000": np.int64(6)}, version=2)
    version, values = container.pull(timeout_s=5)
    assert version == 2 and values["b_0000"] == 6
    assert VariableContainer(address).update(variables, timeout_s=5) == 2
    np.testing.assert_array_equal(variables["a_0000"].numpy(), 2 * np.ones([2, 3]))
    with pytest.raises(UserError, match="do not match"):
      container.update({"other": tf.Variable(0.0)})
  finally:
    server.stop()


def test_checkpoint_restores_tables(tmp_path):
  config = make_config()
  port = portpicker.pick_unused_port()
  server, address = ReverbReplay.start_server(config, SPEC, port, checkpoint_dir=tmp_path / "reverb")
  observer = ReverbStepObserver(address, DATA_TABLE, T, T, num_envs=2)
  for traj in driver_steps([3, 4], 3 * T):
    observer(traj)
  observer.flush(timeout_ms=10_000)
  observer.close()
  path = ReverbReplay.checkpoint(address)
  assert str(tmp_path / "reverb") in path
  server.stop()
  server, address = ReverbReplay.start_server(config, SPEC, port, checkpoint_dir=tmp_path / "reverb")
  try:
    assert reverb.Client(address).server_info()[DATA_TABLE].current_size == 2 * 3
  finally:
    server.stop()


def test_wait_for_server_is_bounded():
  with pytest.raises(UserError, match="no Reverb server"):
    ReverbReplay.wait_for_server(f"localhost:{portpicker.pick_unused_port()}", timeout_s=1.0)


def test_reverb_learner_pushes_weights_and_counts_steps(tmp_path):
  from dreamer_tf.agent.dreamer_agent import DreamerAgent
  from dreamer_tf.envs import make_env
  from dreamer_tf.replay.reverb_replay import ReverbLearner
  from dreamer_tf.training.loop import specs_of

  config = load_config("gym_CartPole-v1", ["debug"], ["run.train_start=0"], has_image=False)
  env = make_env("gym_CartPole-v1", config)
  spec = step_spec(env.observation_spec(), env.action_spec())
  agent = DreamerAgent(*specs_of(env), config, seed=0)
  env.close()
  learner = ReverbLearner(config, spec, agent, tmp_path / "reverb", push_every_updates=3)
  try:
    assert learner.push() and not learner.push()  # The first push always; then every 3 updates.
    agent.train_step_counter.assign(3)
    assert learner.push()
    assert VariableContainer(learner.address).pull(timeout_s=5)[0] == 3
    stats = learner.stats()
    assert stats["inserts"] == 0 and learner.agent_steps() == 0
    assert learner.dataset().element_spec == SequenceReplayBuffer(spec, 1, 100).as_dataset(4, 16).element_spec
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    assert str(tmp_path / "reverb") in learner.checkpoint(ckpt)
    assert (ckpt / "reverb_checkpoint.txt").exists()
  finally:
    learner.close()
