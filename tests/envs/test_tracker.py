"""EpisodeTracker: per-env returns and lengths from batched TimeSteps, and log_ keys."""

import numpy as np
import pytest

from dreamer_tf.config import load_config
from dreamer_tf.envs import EpisodeTracker, make_batched_env, make_env

TOY_DICT = "gym_toy_gym_env:ToyDict-v0"  # Reward t at step t; truncated after 5 steps.


def test_batched_returns_lengths_and_log_keys():
  env = make_batched_env(TOY_DICT, load_config(), num_envs=2, seed=0)
  tracker = EpisodeTracker()
  assert tracker.update(env.reset()) == []
  finished = []
  # Env 0 terminates at its 3rd step (action 1 -> 10); env 1 runs to the 5-step limit.
  actions = [[-1, -1], [-1, -1], [1, -1], [-1, -1], [-1, -1]]
  for action in actions:
    step = env.step(np.array([[a, 0.0] for a in action], np.float32))
    finished += tracker.update(step)
  assert [(s["env"], s["return"], s["length"]) for s in finished] == [(0.0, 6.0, 3.0), (1.0, 15.0, 5.0)]
  assert "log_score" in finished[0] and isinstance(finished[0]["log_score"], float)
  last_score = float(step.observation["log_score"][1])
  assert finished[1]["log_score"] == last_score
  # Env 0 restarted (FIRST) after its LAST step; its next episode starts from zero.
  step = env.step(np.zeros((2, 2), np.float32))
  assert tracker.update(step) == []


def test_unbatched_and_crafter_achievements():
  config = load_config("crafter_reward", overrides=["env.crafter.length=8"])
  env = make_env("crafter_reward", config, seed=0)
  tracker = EpisodeTracker()
  tracker.update(env.reset())
  stats = []
  for _ in range(8):
    stats += tracker.update(env.step(np.int32(5)))
  assert len(stats) == 1 and stats[0]["length"] == 8.0
  assert "log_achievement_collect_wood" in stats[0]
  assert stats[0]["return"] == pytest.approx(float(np.float32(stats[0]["return"])))
