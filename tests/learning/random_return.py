"""Prints the mean return of a uniformly random policy on any ``--env``: the reference line of
the learning curves in docs/learning.md.

Usage::

  .venv/bin/python tests/learning/random_return.py --env=gym_CartPole-v1 --episodes=100
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MUJOCO_GL", "egl")

import argparse
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # For gym_goal_line_env:GoalLine-v0.


def random_returns(env_name: str, episodes: int, seed: int = 0, presets=("debug",)) -> list[float]:
  """Returns of ``episodes`` episodes of a uniformly random policy, via the project's env factory."""
  import tensorflow as tf
  from tf_agents.policies import random_tf_policy

  from dreamer_tf import envs as envs_lib
  from dreamer_tf.main import resolve_config
  from dreamer_tf.training import loop

  config = resolve_config(env_name, list(presets), [f"run.seed={seed}"])
  env = envs_lib.make_env(env_name, config, seed=seed + 10_000)
  try:
    tf.random.set_seed(seed)
    policy = random_tf_policy.RandomTFPolicy(*loop.specs_of(env))
    return [r["return"] for r in loop.evaluate(policy, env, episodes)]
  finally:
    env.close()


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--env", required=True)
  parser.add_argument("--episodes", type=int, default=100)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  returns = random_returns(args.env, args.episodes, args.seed)
  print(
    f"{args.env}: random policy, {len(returns)} episodes: mean return {np.mean(returns):.2f} "
    f"(std {np.std(returns):.2f}, min {np.min(returns):.2f}, max {np.max(returns):.2f})"
  )


if __name__ == "__main__":
  main()
