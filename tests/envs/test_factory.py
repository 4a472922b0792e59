"""The factory: names, errors, batching (threads and processes) and the config mapping."""

import numpy as np
import pytest
from tf_agents.system import system_multiprocessing
from tf_agents.trajectories import time_step as ts

from dreamer_tf.config import domain_preset, load_config
from dreamer_tf.envs import SUITES, has_image_observation, make_batched_env, make_env, parse_name
from dreamer_tf.errors import UserError


def test_parse_name():
  assert parse_name("atari_ms_pacman") == ("atari", "ms_pacman")
  assert parse_name("atari100k_pong") == ("atari100k", "pong")
  assert parse_name("dmcproprio_ball_in_cup_catch") == ("dmcproprio", "ball_in_cup_catch")
  assert parse_name("gym_pkg.mod:My_Env-v0") == ("gym", "pkg.mod:My_Env-v0")
  assert parse_name("bsuite_catch/0") == ("bsuite", "catch/0")
  assert set(SUITES) >= {"atari", "atari100k", "dmc", "dmcproprio", "crafter", "gym", "bsuite"}


def test_unknown_suite_lists_suites():
  with pytest.raises(UserError, match=r"did you mean 'atari_pong'\?.*valid suites: atari, atari100k"):
    make_env("atary_pong", load_config())
  with pytest.raises(UserError, match="names no task"):
    make_env("atari_", load_config())
  with pytest.raises(UserError) as info:
    make_env("minecraft_diamond", load_config())
  assert "\n" not in str(info.value)


def test_has_image_observation_matches_domain_presets():
  config = load_config()
  for name, image, preset in [
    ("atari_pong", True, "atari"),
    ("atari100k_pong", True, "atari100k"),
    ("dmc_walker_walk", True, "dmc_vision"),
    ("dmcproprio_walker_walk", False, "dmc_proprio"),
    ("crafter_reward", True, "crafter"),
    ("bsuite_catch/0", False, "bsuite"),
  ]:
    assert has_image_observation(name, config) == image, name
    assert domain_preset(name) == preset


def test_batched_env_seeds_each_copy():
  config = load_config("atari_pong", presets=["debug"])
  env = make_batched_env("atari_pong", config, num_envs=3, seed=0)
  assert env.batch_size == 3 and env.batched
  first = env.reset()
  assert first.observation["image"].shape == (3, 64, 64, 3)
  assert (first.step_type == ts.StepType.FIRST).all()
  step = env.step(np.array([1, 2, 3], np.int32))
  assert step.observation["image"].dtype == np.uint8 and step.reward.shape == (3,)
  env.close()


def test_single_copy_is_still_batched():
  env = make_batched_env("gym_CartPole-v1", load_config(), num_envs=1)
  assert env.batch_size == 1
  assert env.reset().observation["vector"].shape == (1, 4)


def test_parallel_env_in_subprocesses():
  system_multiprocessing.enable_interactive_mode()
  env = make_batched_env("gym_CartPole-v1", load_config(), num_envs=2, seed=0, parallel=True)
  try:
    assert env.batch_size == 2
    first = env.reset()
    assert first.observation["vector"].shape == (2, 4)
    for _ in range(30):  # Through at least one automatic reset.
      step = env.step(np.zeros(2, np.int32))
    assert step.observation["vector"].dtype == np.float32
  finally:
    env.close()


def test_batched_pixels_dmc():
  env = make_batched_env("dmc_cartpole_swingup", load_config("dmc_cartpole_swingup"), num_envs=2, seed=0)
  env.reset()
  step = env.step(np.zeros((2, 1), np.float32))
  assert step.observation["image"].shape == (2, 64, 64, 3)
  assert step.observation["image"].std() > 0
  env.close()
