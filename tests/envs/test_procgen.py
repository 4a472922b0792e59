"""ProcGen (the ``[procgen]`` extra, part of ``[test]``): specs, termination and validation."""

import sys

import numpy as np
import pytest
from env_checks import check_action_spec, check_step, run_until_last
from tf_agents.environments import utils

from dreamer_tf.config import load_config
from dreamer_tf.envs import has_image_observation, make_env
from dreamer_tf.errors import MissingDependencyError, UserError


def test_coinrun():
  env = make_env("procgen_coinrun", load_config("procgen_coinrun"), seed=0)
  assert env.observation_spec()["image"].shape == (64, 64, 3)
  check_action_spec(env)
  assert env.action_spec().maximum == 14
  check_step(env, env.reset())
  rng = np.random.default_rng(0)
  _, last = run_until_last(env, lambda: np.int32(rng.integers(15)), 1100)
  assert last.discount == 0.0
  utils.validate_py_environment(env, episodes=1)
  assert has_image_observation("procgen_coinrun", load_config())


def test_seeds_and_unknown_game():
  images = [make_env("procgen_maze", load_config(), seed=s).reset().observation["image"] for s in (3, 3)]
  np.testing.assert_array_equal(*images)
  with pytest.raises(UserError, match="did you mean 'procgen_coinrun'"):
    make_env("procgen_coinrunn", load_config())


def test_missing_package_names_what_to_install(monkeypatch):
  monkeypatch.setitem(sys.modules, "procgen", None)  # What an install without the extra sees.
  with pytest.raises(MissingDependencyError) as info:
    make_env("procgen_coinrun", load_config())
  assert str(info.value) == (
    "procgen_ environments needs the optional package 'procgen-mirror', which is not installed: "
    "pip install -c constraints.txt -e '.[procgen]'"
  )
