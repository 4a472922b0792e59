"""DreamerStepObserver against a real TF-Agents PyDriver and the TimeSteps it produced."""

import numpy as np
from tf_agents.drivers import py_driver
from tf_agents.environments import batched_py_environment, random_py_environment, wrappers
from tf_agents.policies import random_py_policy
from tf_agents.specs import array_spec

from dreamer_tf.replay import DreamerStepObserver, SequenceReplayBuffer, step_spec

OBS_SPEC = {
  "image": array_spec.BoundedArraySpec((16, 16, 3), np.uint8, minimum=0, maximum=255),
  "vector": array_spec.BoundedArraySpec((2,), np.float64, minimum=-1.0, maximum=1.0),
  "log_score": array_spec.ArraySpec((), np.float32),
}
ACTION_SPEC = array_spec.BoundedArraySpec((), np.int64, minimum=0, maximum=3)


def reward_fn(step_type, action, observation):
  del step_type
  return np.asarray(observation["vector"][0] + 10 * action, np.float32)


def make_env(seed):
  env = random_py_environment.RandomPyEnvironment(
    OBS_SPEC, ACTION_SPEC, episode_end_probability=0.15, reward_fn=reward_fn, seed=seed
  )
  return wrappers.TimeLimit(env, duration=6)  # Truncation: LAST with discount 1.


class Recorder:
  """Keeps what the driver saw: the TimeStep of step t and the action taken there."""

  def __init__(self):
    self.time_steps, self.actions = [], []

  def __call__(self, transition):
    time_step, action_step, _ = transition
    self.time_steps.append(time_step)
    self.actions.append(action_step.action)


def expected_steps(recorder, batched):
  stack = (lambda xs: np.stack(xs, 1)) if batched else (lambda xs: np.stack(xs)[None])
  ts = recorder.time_steps
  last = stack([t.is_last() for t in ts])
  return {
    "image": stack([t.observation["image"] for t in ts]),
    "vector": stack([t.observation["vector"] for t in ts]).astype(np.float32),
    "action": stack(recorder.actions).astype(np.int32),
    "reward": stack([t.reward for t in ts]).astype(np.float32),
    "is_first": stack([t.is_first() for t in ts]),
    "is_last": last,
    "is_terminal": last & (stack([t.discount for t in ts]) == 0),
  }


def run_driver(env, num_envs, steps):
  replay = SequenceReplayBuffer(step_spec(env.observation_spec(), env.action_spec()), num_envs, 10_000)
  assert "log_score" not in replay.data_spec["obs"]
  outer = (num_envs,) if env.batched else ()
  policy = random_py_policy.RandomPyPolicy(env.time_step_spec(), env.action_spec(), outer_dims=outer)
  recorder = Recorder()
  driver = py_driver.PyDriver(
    env, policy, observers=[DreamerStepObserver(replay)], transition_observers=[recorder], max_steps=steps
  )
  driver.run(env.reset())
  return replay, expected_steps(recorder, env.batched)


def check(replay, expected):
  stored = {k: v.numpy() for k, v in replay.gather_all().items() if k != "obs"}
  stored.update({k: v.numpy() for k, v in replay.gather_all()["obs"].items()})
  for key, value in expected.items():
    np.testing.assert_array_equal(stored[key], value, err_msg=key)
  assert stored["action"].dtype == np.int32 and stored["vector"].dtype == np.float32


def test_observer_matches_time_steps_of_batched_driver():
  env = batched_py_environment.BatchedPyEnvironment([make_env(seed) for seed in range(3)], multithreading=False)
  replay, expected = run_driver(env, 3, steps=300)
  check(replay, expected)
  assert replay.stream_length == len(expected["reward"][0]) >= 100
  # The run covers the cases that matter: terminations, truncations, rewards on LAST steps.
  last, terminal = expected["is_last"], expected["is_terminal"]
  assert terminal.sum() > 5 and (last & ~terminal).sum() > 5
  assert np.all(expected["reward"][expected["is_first"]] == 0)
  assert np.abs(expected["reward"][last]).sum() > 0
  # Stored rewards are the next-step rewards of the trajectories, shifted by one step.
  batch = replay.sample(8, 20)
  assert batch["is_first"][:, 0].all() and batch["obs"]["image"].dtype == np.uint8


def test_observer_with_unbatched_environment():
  replay, expected = run_driver(make_env(7), 1, steps=60)
  check(replay, expected)
  assert expected["is_first"].sum() >= 5
