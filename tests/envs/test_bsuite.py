"""bsuite: flattened vector observations, discrete actions, termination, ids."""

import numpy as np
import pytest
from env_checks import check_action_spec, check_step, run_until_last
from tf_agents.environments import utils

from dreamer_tf.config import load_config
from dreamer_tf.envs import has_image_observation, make_env
from dreamer_tf.errors import UserError

pytest.importorskip("bsuite")


@pytest.fixture(scope="module")
def catch():
  return make_env("bsuite_catch/0", load_config("bsuite_catch/0"), seed=0)


def test_catch_specs_termination_and_validate(catch):
  assert catch.observation_spec()["vector"].shape == (50,)  # 10x5 board, flattened.
  check_action_spec(catch)
  assert catch.action_spec().maximum == 2
  check_step(catch, catch.reset())
  count, last = run_until_last(catch, lambda: np.int32(1), 20)
  assert count == 9 and last.discount == 0.0 and last.reward in (-1.0, 1.0)
  utils.validate_py_environment(catch, episodes=3)
  assert not has_image_observation("bsuite_catch/0", load_config())


def test_seeds_reproduce_and_default_setting():
  def ball_columns(name, seed):
    env = make_env(name, load_config(name), seed=seed)
    return [int(np.argmax(env.reset().observation["vector"][:5])) for _ in range(12)]

  assert ball_columns("bsuite_catch/0", 1) == ball_columns("bsuite_catch", 1)
  assert ball_columns("bsuite_catch", 1) != ball_columns("bsuite_catch", 2)


def test_unknown_ids():
  with pytest.raises(UserError, match="did you mean 'bsuite_catch/0'"):
    make_env("bsuite_cacth/0", load_config())
  with pytest.raises(UserError, match="catch has settings catch/0 .. catch/19"):
    make_env("bsuite_catch/99", load_config())
