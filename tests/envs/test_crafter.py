"""Crafter: 64x64 images, log_achievement_ keys, truncation, reward variants."""

import numpy as np
import pytest
from env_checks import check_action_spec, check_step, run_until_last
from tf_agents.environments import utils

from dreamer_tf.config import load_config
from dreamer_tf.envs import make_env
from dreamer_tf.envs.crafter import CrafterEnvironment
from dreamer_tf.errors import UserError


@pytest.fixture(scope="module")
def crafter_env():
  config = load_config("crafter_reward", overrides=["env.crafter.length=30"])
  return make_env("crafter_reward", config, seed=0)


def test_specs_and_achievement_keys(crafter_env):
  spec = crafter_env.observation_spec()
  assert spec["image"].shape == (64, 64, 3)
  assert "log_achievement_collect_wood" in spec and spec["log_achievement_collect_wood"].shape == ()
  assert len([k for k in spec if k.startswith("log_achievement_")]) == 22
  check_action_spec(crafter_env)
  assert crafter_env.action_spec().maximum == 16
  check_step(crafter_env, crafter_env.reset())
  check_step(crafter_env, crafter_env.step(np.int32(1)))


def test_length_truncates_and_validate(crafter_env):
  crafter_env.reset()
  count, last = run_until_last(crafter_env, lambda: np.int32(0), 100)
  assert count == 30 and last.discount == 1.0
  utils.validate_py_environment(crafter_env, episodes=1)


def test_noreward_variant_and_seeds():
  a = make_env("crafter_noreward", load_config("crafter_noreward"), seed=2)
  b = CrafterEnvironment(reward=False, seed=2)
  np.testing.assert_array_equal(a.reset().observation["image"], b.reset().observation["image"])
  rng = np.random.default_rng(0)
  for _ in range(50):
    action = np.int32(rng.integers(17))
    assert a.step(action).reward == 0.0
    b.step(action)
  np.testing.assert_array_equal(a.current_time_step().observation["image"], b.current_time_step().observation["image"])


def test_unknown_task():
  with pytest.raises(UserError, match="crafter_reward, crafter_noreward"):
    make_env("crafter_rewards", load_config("crafter_rewards"))
