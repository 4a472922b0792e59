"""gymnasium environments: vector, image and Dict observations, Discrete and Box actions, user envs."""

import numpy as np
import pytest
from env_checks import check_action_spec, check_step, run_until_last
from tf_agents.environments import utils
from tf_agents.trajectories import time_step as ts

from dreamer_tf.config import load_config
from dreamer_tf.envs import has_image_observation, make_env
from dreamer_tf.errors import UserError

TOY_DICT = "gym_toy_gym_env:ToyDict-v0"
TOY_IMAGE = "gym_toy_gym_env:ToyImage-v0"


def config_for(name, *overrides):
  return load_config(name, overrides=overrides, has_image=has_image_observation(name, load_config()))


@pytest.fixture(scope="module")
def cartpole():
  return make_env("gym_CartPole-v1", config_for("gym_CartPole-v1"), seed=0)


@pytest.fixture(scope="module")
def toy_dict():
  return make_env(TOY_DICT, config_for(TOY_DICT), seed=0)


def test_vector_observation_discrete_action(cartpole):
  assert set(cartpole.observation_spec()) == {"vector", "log_env_fault"}
  assert cartpole.observation_spec()["vector"].shape == (4,)
  check_action_spec(cartpole)
  assert cartpole.action_spec().maximum == 1
  check_step(cartpole, cartpole.reset())
  count, last = run_until_last(cartpole, lambda: np.int32(0), 500)
  assert last.discount == 0.0 and count < 100  # Falling over is a true termination.
  utils.validate_py_environment(cartpole, episodes=2)


def test_user_env_dict_observation_and_box_action(toy_dict):
  spec = toy_dict.observation_spec()
  assert set(spec) == {"image", "vector", "log_score", "log_env_fault"}
  assert spec["image"].shape == (64, 64, 3) and spec["image"].dtype == np.uint8  # Resized from 32x48.
  assert spec["log_score"].shape == ()
  check_action_spec(toy_dict)
  assert toy_dict.action_spec().shape == (2,)
  check_step(toy_dict, toy_dict.reset())
  step = toy_dict.step(np.array([-1.0, 0.5], np.float32))
  check_step(toy_dict, step)
  np.testing.assert_allclose(step.observation["vector"], [0.0, 2.5, 1.0])  # [-1, 1] -> box bounds.
  assert (step.observation["image"] == 10).all()
  step = toy_dict.step(np.array([0.0, 7.0], np.float32))  # Clipped to 1 -> 5.
  np.testing.assert_allclose(step.observation["vector"], [5.0, 5.0, 2.0])
  assert step.reward == 2.0


def test_user_env_termination_vs_truncation(toy_dict):
  toy_dict.reset()
  last = toy_dict.step(np.array([1.0, 0.0], np.float32))  # Maps to 10 > 9.5: terminated.
  assert last.step_type == ts.StepType.LAST and last.discount == 0.0
  assert toy_dict.step(np.zeros(2, np.float32)).step_type == ts.StepType.FIRST
  count, last = run_until_last(toy_dict, lambda: np.zeros(2, np.float32), 10)
  assert count == 5 and last.discount == 1.0  # max_episode_steps=5: truncated.
  utils.validate_py_environment(toy_dict, episodes=2)


def test_user_env_image_observation_discrete_start():
  env = make_env(TOY_IMAGE, config_for(TOY_IMAGE), seed=0)
  assert set(env.observation_spec()) == {"image", "log_env_fault"}
  assert env.action_spec().maximum == 2
  env.reset()
  step = env.step(np.int32(0))  # Agent action 0 is Discrete(3, start=1)'s 1.
  assert step.reward == 1.0 and (step.observation["image"] == 50).all()
  utils.validate_py_environment(env, episodes=1)


def test_continuous_bounds_of_a_registered_env():
  env = make_env("gym_Pendulum-v1", config_for("gym_Pendulum-v1"), seed=0)
  assert env.action_spec().shape == (1,)
  assert env._normalize(np.array([1.0]))[0] == 2.0 and env._normalize(np.array([-3.0]))[0] == -2.0
  env.reset()
  count, last = run_until_last(env, lambda: np.ones(1, np.float32), 300)
  assert count == 200 and last.discount == 1.0


def test_has_image_observation_picks_domain_block():
  assert has_image_observation(TOY_DICT, load_config())
  assert has_image_observation(TOY_IMAGE, load_config())
  assert not has_image_observation("gym_CartPole-v1", load_config())
  assert config_for(TOY_IMAGE).model.mlp_keys == "$^"  # dmc_vision block.
  assert config_for("gym_CartPole-v1").model.cnn_keys == "$^"  # dmc_proprio block.


def test_gym_repeat_sums_rewards():
  env = make_env(TOY_DICT, config_for(TOY_DICT, "env.gym.repeat=2"), seed=0)
  env.reset()
  assert env.step(np.zeros(2, np.float32)).reward == 1.0 + 2.0


def test_seeds_reproduce():
  firsts = [make_env(TOY_DICT, config_for(TOY_DICT), seed=s).reset().observation["log_score"] for s in (1, 1, 2)]
  assert firsts[0] == firsts[1] != firsts[2]


def test_ale_through_gymnasium():
  env = make_env("gym_ALE/Pong-v5", config_for("gym_ALE/Pong-v5"), seed=0)
  assert env.observation_spec()["image"].shape == (64, 64, 3)
  check_step(env, env.reset())


def test_errors():
  with pytest.raises(UserError, match="did you mean 'gym_CartPole-v1'"):
    make_env("gym_CartPole-v2", load_config())
  with pytest.raises(UserError, match="cannot import module 'no_such_module'"):
    make_env("gym_no_such_module:Env-v0", load_config())
  with pytest.raises(UserError, match="is not registered after importing 'toy_gym_env'"):
    make_env("gym_toy_gym_env:Missing-v0", load_config())
