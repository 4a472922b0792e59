"""FaultTolerantEnv and CheckFiniteObservations on a real environment (bsuite catch) with injected faults."""

import logging

import numpy as np
import pytest
from tf_agents.drivers import py_driver
from tf_agents.environments import batched_py_environment, wrappers
from tf_agents.policies import random_py_policy
from tf_agents.trajectories import time_step as ts

from dreamer_tf import envs as envs_lib
from dreamer_tf.config import load_config
from dreamer_tf.envs.check_finite import CheckFiniteObservations, NonFiniteObservationError
from dreamer_tf.envs.fault_tolerance import FAULT_KEY, EnvironmentFailedError, FaultTolerantEnv
from dreamer_tf.errors import UserError
from dreamer_tf.replay import DreamerStepObserver, SequenceReplayBuffer, step_spec

ENV = "bsuite_catch/0"
CATCH_LENGTH = 9  # Steps of a catch episode (the ball falls through a 10x5 grid).


class Faults:
  """Shared commands for every copy a factory builds: raise on the next step/reset/construction."""

  def __init__(self):
    self.step = 0  # Number of upcoming step() calls that raise.
    self.reset = 0
    self.construct = 0
    self.nan_key = None  # Observation key to fill with NaN on the next step.
    self.user_error = False
    self.built = []
    self.closed = []


class FaultyEnv(wrappers.PyEnvironmentBaseWrapper):
  """Wraps a real env and raises (or returns NaN) when its Faults say so."""

  def __init__(self, env, faults):
    super().__init__(env)
    self._faults = faults

  def _reset(self):
    if self._faults.reset:
      self._faults.reset -= 1
      raise RuntimeError("emulator reset crashed\nsecond line of the crash")
    return self._env.reset()

  def _step(self, action):
    if self._faults.user_error:
      raise UserError("bad setting found while stepping")
    if self._faults.step:
      self._faults.step -= 1
      raise RuntimeError("emulator step crashed")
    step = self._env.step(action)
    if self._faults.nan_key:
      observation = dict(step.observation)
      observation[self._faults.nan_key] = np.full_like(observation[self._faults.nan_key], np.nan)
      step = step._replace(observation=observation)
    return step

  def close(self):
    self._faults.closed.append(self)
    self._env.close()


def real_env(config, seed=0, name=ENV):
  """The suite's environment without the factory's own fault-tolerance wrapper (once it has one)."""
  env = envs_lib.make_env(name, config, seed)
  return env.env if isinstance(env, FaultTolerantEnv) else env


@pytest.fixture(scope="module")
def config():
  return load_config(ENV, ["debug"])


def factory_for(config, faults, check_finite=False, seed=0):
  def factory():
    if faults.construct:
      faults.construct -= 1
      raise OSError("ROM file vanished")
    env = FaultyEnv(real_env(config, seed), faults)
    if check_finite:
      env = CheckFiniteObservations(env, ENV)
    faults.built.append(env)
    return env

  return factory


def test_spec_gains_the_fault_key(config):
  faults = Faults()
  env = FaultTolerantEnv(factory_for(config, faults), ENV)
  inner = faults.built[0]
  assert env.observation_spec() == dict(inner.observation_spec(), **{FAULT_KEY: env.observation_spec()[FAULT_KEY]})
  assert env.observation_spec()[FAULT_KEY].dtype == np.float32 and env.observation_spec()[FAULT_KEY].shape == ()
  assert env.action_spec() == inner.action_spec()
  assert env._faults is faults  # Attributes reach the wrapped env.
  first = env.reset()
  assert first.is_first() and first.observation[FAULT_KEY] == 0.0
  # log_ keys are never stored: the replay spec is the unwrapped one.
  assert step_spec(env.observation_spec(), env.action_spec()) == step_spec(inner.observation_spec(), env.action_spec())


def test_step_fault_ends_episode_with_truncation_then_first(config, caplog):
  faults = Faults()
  env = FaultTolerantEnv(factory_for(config, faults), ENV)
  env.reset()
  good = env.step(np.int32(1))
  assert good.step_type == ts.StepType.MID
  faults.step = 1
  with caplog.at_level(logging.WARNING):
    broken = env.step(np.int32(1))
  assert broken.step_type == ts.StepType.LAST
  assert float(broken.discount) == 1.0 and float(broken.reward) == 0.0  # Truncation, not termination.
  assert broken.observation[FAULT_KEY] == 1.0
  np.testing.assert_array_equal(broken.observation["vector"], good.observation["vector"])  # Last good frame.
  assert any(
    "Environment bsuite_catch/0 raised in step (RuntimeError: emulator step crashed); rebuilding it" in r.getMessage()
    for r in caplog.records
  )
  assert len(faults.built) == 2 and faults.closed == [faults.built[0]]
  assert env.env is faults.built[1]
  first = env.step(np.int32(1))
  assert first.step_type == ts.StepType.FIRST and first.observation[FAULT_KEY] == 0.0
  steps = [env.step(np.int32(1)) for _ in range(CATCH_LENGTH)]
  assert steps[-1].is_last() and all(s.observation[FAULT_KEY] == 0.0 for s in steps)
  assert env.failures == 1


def test_reset_fault_is_retried_on_a_rebuilt_env(config, caplog):
  faults = Faults()
  env = FaultTolerantEnv(factory_for(config, faults), ENV)
  faults.reset = 1
  with caplog.at_level(logging.WARNING):
    first = env.reset()
  assert first.is_first() and len(faults.built) == 2
  assert any("raised in reset (RuntimeError: emulator reset crashed)" in r.getMessage() for r in caplog.records)
  assert env.step(np.int32(0)).step_type == ts.StepType.MID


def test_failed_rebuild_is_retried(config):
  faults = Faults()
  env = FaultTolerantEnv(factory_for(config, faults), ENV, max_consecutive=3)
  env.reset()
  faults.step, faults.construct = 1, 1  # The step fails, then the first rebuild fails too.
  assert env.step(np.int32(1)).is_last()
  assert env.step(np.int32(1)).is_first()
  assert env.failures == 2 and len(faults.built) == 2


def test_consecutive_failures_raise_one_line_user_error(config):
  faults = Faults()
  env = FaultTolerantEnv(factory_for(config, faults), ENV, max_consecutive=3)
  env.reset()
  faults.step = 100
  assert env.step(np.int32(1)).is_last()  # Failure 1.
  assert env.step(np.int32(1)).is_first()
  assert env.step(np.int32(1)).is_last()  # Failure 2: still no successful step in between.
  assert env.step(np.int32(1)).is_first()
  with pytest.raises(EnvironmentFailedError) as info:
    env.step(np.int32(1))
  message = str(info.value)
  assert isinstance(info.value, UserError) and "\n" not in message
  assert message.startswith("environment bsuite_catch/0 failed 3 times in a row (last in step: ")
  assert "RuntimeError: emulator step crashed" in message


def test_reset_failures_count_as_consecutive_and_name_the_first_line(config):
  faults = Faults()
  env = FaultTolerantEnv(factory_for(config, faults), ENV, max_consecutive=2)
  faults.reset = 5
  with pytest.raises(EnvironmentFailedError, match=r"last in reset: RuntimeError: emulator reset crashed\)") as info:
    env.reset()
  assert "second line" not in str(info.value)


def test_failures_within_a_window_raise(config):
  faults = Faults()
  env = FaultTolerantEnv(factory_for(config, faults), ENV, max_consecutive=5, max_in_window=3, window_steps=50)
  env.reset()
  for _ in range(2):  # Failures separated by good steps: survived.
    faults.step = 1
    assert env.step(np.int32(1)).is_last()
    for _ in range(3):
      env.step(np.int32(1))
  faults.step = 1
  with pytest.raises(EnvironmentFailedError, match="failed 3 times within 50 steps"):
    env.step(np.int32(1))


def test_failures_outside_the_window_are_forgotten(config):
  faults = Faults()
  env = FaultTolerantEnv(factory_for(config, faults), ENV, max_consecutive=5, max_in_window=2, window_steps=5)
  env.reset()
  for _ in range(4):
    faults.step = 1
    assert env.step(np.int32(1)).is_last()
    for _ in range(6):
      env.step(np.int32(1))
  assert env.failures == 4


def test_user_errors_pass_through_without_rebuild(config):
  faults = Faults()
  env = FaultTolerantEnv(factory_for(config, faults), ENV)
  env.reset()
  faults.user_error = True
  with pytest.raises(UserError, match="bad setting found while stepping"):
    env.step(np.int32(1))
  assert len(faults.built) == 1 and env.failures == 0


def run_with_fault(config, fault_at=4, iterations=3 * CATCH_LENGTH):
  """Two copies under a PyDriver with replay; copy 1 crashes at iteration ``fault_at``."""
  faults = [Faults(), Faults()]
  copies = [FaultTolerantEnv(factory_for(config, f, seed=i), ENV) for i, f in enumerate(faults)]
  env = batched_py_environment.BatchedPyEnvironment(copies, multithreading=False)
  replay = SequenceReplayBuffer(step_spec(env.observation_spec(), env.action_spec()), batch_size=2, capacity=1000)
  seen = []
  policy = random_py_policy.RandomPyPolicy(env.time_step_spec(), env.action_spec(), seed=0)
  driver = py_driver.PyDriver(env, policy, observers=[DreamerStepObserver(replay), seen.append], max_steps=2)
  tracker = envs_lib.EpisodeTracker(2)
  time_step = env.reset()
  tracker.update(time_step)
  finished = []
  for t in range(iterations):
    if t == fault_at:
      faults[1].step = 1
    time_step, _ = driver.run(time_step)
    finished += tracker.update(time_step)
  return replay, seen, tracker, finished


def test_broken_episode_in_driver_and_replay(config):
  """Two copies, one crashes mid-episode: only its episode ends, as a truncation, then goes on."""
  replay, seen, _, _ = run_with_fault(config)
  assert replay.size == 2 * len(seen)
  fault_rows = [s for s in seen if s.observation[FAULT_KEY][1] == 1.0]
  assert len(fault_rows) == 1 and not any(s.observation[FAULT_KEY][0] for s in seen)
  fault = fault_rows[0]
  assert fault.step_type[1] == ts.StepType.LAST and fault.step_type[0] == ts.StepType.MID
  assert float(fault.discount[1]) == 1.0  # Not a termination: the world model learns no false ending.
  index = next(i for i, s in enumerate(seen) if s is fault)
  assert seen[index + 1].step_type[1] == ts.StepType.FIRST


def test_tracker_leaves_broken_episodes_out(config):
  _, _, tracker, finished = run_with_fault(config)
  assert finished and all(s.get(FAULT_KEY, 0.0) == 0.0 for s in finished)
  assert any(s["env"] == 1.0 for s in finished)  # Copy 1 went on after the rebuild.
  assert tracker.env_faults == 1


def test_check_finite_rejects_nan_observation_naming_env_and_key(config):
  faults = Faults()
  env = factory_for(config, faults, check_finite=True)()
  env.reset()
  env.step(np.int32(1))
  faults.nan_key = "vector"
  with pytest.raises(NonFiniteObservationError) as info:
    env.step(np.int32(1))
  message = str(info.value)
  assert isinstance(info.value, UserError) and "\n" not in message
  assert message.startswith("environment bsuite_catch/0 returned NaN in observation 'vector' at step 2 of the episode")


class InfRewardEnv(wrappers.PyEnvironmentBaseWrapper):
  def _step(self, action):
    return self._env.step(action)._replace(reward=np.asarray(np.inf, np.float32))


def test_check_finite_rejects_infinite_reward(config):
  env = CheckFiniteObservations(InfRewardEnv(real_env(config)), ENV)
  env.reset()
  with pytest.raises(NonFiniteObservationError, match="returned infinity in reward at step 1"):
    env.step(np.int32(0))


def test_check_finite_passes_finite_steps_and_skips_integer_images(config):
  atari = load_config("atari_pong", ["debug"])
  env = CheckFiniteObservations(real_env(atari, name="atari_pong"), "atari_pong")
  try:
    assert env._float_keys == []  # uint8 image only: nothing to check.
    env.reset()
    env.step(np.int32(0))
  finally:
    env.close()
  env = CheckFiniteObservations(real_env(config), ENV)
  assert env._float_keys == ["vector"]
  env.reset()
  for _ in range(2 * CATCH_LENGTH):
    env.step(np.int32(1))


def test_non_finite_observation_is_not_retried_by_fault_tolerance(config):
  faults = Faults()
  env = FaultTolerantEnv(factory_for(config, faults, check_finite=True), ENV)
  env.reset()
  faults.nan_key = "vector"
  with pytest.raises(NonFiniteObservationError, match="observation 'vector'"):
    env.step(np.int32(1))
  assert len(faults.built) == 1


def test_make_env_is_fault_tolerant_and_checks_finiteness(config):
  env = envs_lib.make_env(ENV, config)
  try:
    assert isinstance(env, FaultTolerantEnv)
    assert FAULT_KEY in env.observation_spec()
  finally:
    env.close()
