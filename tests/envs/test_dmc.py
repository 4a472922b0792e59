"""DeepMind Control: pixel and proprio specs, cameras, action repeat, time-limit truncation."""

import numpy as np
import pytest
from env_checks import check_action_spec, check_step, run_until_last
from tf_agents.environments import utils
from tf_agents.trajectories import time_step as ts

from dreamer_tf.config import load_config
from dreamer_tf.envs import make_env
from dreamer_tf.envs.dmc import DMCEnvironment
from dreamer_tf.errors import UserError


@pytest.fixture(scope="module")
def walker():
  env = make_env("dmc_walker_walk", load_config("dmc_walker_walk"), seed=0)
  yield env
  env.close()


@pytest.fixture(scope="module")
def cartpole_proprio():
  env = make_env("dmcproprio_cartpole_swingup", load_config("dmcproprio_cartpole_swingup"), seed=0)
  yield env
  env.close()


def test_pixels_by_default(walker):
  assert set(walker.observation_spec()) == {"image", "log_env_fault"}
  assert walker.observation_spec()["image"].shape == (64, 64, 3)
  check_action_spec(walker)
  assert walker.action_spec().shape == (6,)
  first = walker.reset()
  check_step(walker, first)
  assert first.observation["image"].std() > 0  # A real render, not a blank frame.
  step = walker.step(np.zeros(6, np.float32))
  check_step(walker, step)
  assert step.step_type == ts.StepType.MID


def test_proprio_variant(cartpole_proprio):
  spec = cartpole_proprio.observation_spec()
  assert "image" not in spec and set(spec) == {"position", "velocity", "log_env_fault"}
  assert all(s.dtype == np.float32 and len(s.shape) == 1 for k, s in spec.items() if not k.startswith("log_"))
  check_step(cartpole_proprio, cartpole_proprio.reset())


def test_default_cameras():
  assert DMCEnvironment("quadruped", "walk", image=True, seed=0)._camera == 2
  assert DMCEnvironment("cheetah", "run", image=True, seed=0)._camera == 0
  assert DMCEnvironment("cheetah", "run", camera=1, image=True, seed=0)._camera == 1


def test_action_repeat_sums_rewards():
  env2 = DMCEnvironment("cartpole", "swingup", repeat=2, image=False, proprio=True, seed=5)
  env1 = DMCEnvironment("cartpole", "swingup", repeat=1, image=False, proprio=True, seed=5)
  env2.reset(), env1.reset()
  for i in range(10):
    action = np.array([np.sin(i)], np.float32)
    step2 = env2.step(action)
    rewards = [float(env1.step(action).reward) for _ in range(2)]
    assert float(step2.reward) == pytest.approx(sum(rewards), rel=1e-5)
    np.testing.assert_allclose(step2.observation["position"], env1.current_time_step().observation["position"])


def test_actions_are_clipped():
  a = DMCEnvironment("cartpole", "balance", image=False, proprio=True, seed=1)
  b = DMCEnvironment("cartpole", "balance", image=False, proprio=True, seed=1)
  a.reset(), b.reset()
  for _ in range(5):
    np.testing.assert_array_equal(
      a.step(np.array([5.0], np.float32)).observation["velocity"],
      b.step(np.array([1.0], np.float32)).observation["velocity"],
    )


def test_time_limit_is_truncation_and_validate(cartpole_proprio):
  cartpole_proprio.reset()
  count, last = run_until_last(cartpole_proprio, lambda: np.zeros(1, np.float32), 600)
  assert count == 500 and last.discount == 1.0  # 1000 control steps / repeat 2.
  utils.validate_py_environment(cartpole_proprio, episodes=1)


def test_validate_pixels_with_short_time_limit():
  env = DMCEnvironment("cartpole", "swingup", image=True, seed=0, time_limit=0.2)  # 20 control steps.
  env.reset()
  count, last = run_until_last(env, lambda: np.zeros(1, np.float32), 20)
  assert count == 10 and last.discount == 1.0
  utils.validate_py_environment(env, episodes=1)


def test_seeds_reproduce():
  obs = [
    make_env("dmc_cheetah_run", load_config("dmc_cheetah_run"), seed=s).reset().observation["image"] for s in (4, 4, 5)
  ]
  np.testing.assert_array_equal(obs[0], obs[1])
  assert not np.array_equal(obs[0], obs[2])


def test_unknown_task_suggests_closest():
  with pytest.raises(UserError, match="did you mean 'dmc_walker_walk'"):
    make_env("dmc_walker_wallk", load_config("dmc_walker_wallk"))
