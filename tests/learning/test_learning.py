"""The agent learns: a short CPU training run beats a random policy on a tiny task.

The task is ``GoalLine-v0`` (``goal_line_env.py``): walk along a 13-cell line to its centre
and stay there, 20 steps per episode, dense reward; ``GoalLineContinuous-v0`` is the same task
with a continuous move in [-1, 1] cells, for the continuous actor. A uniformly random policy earns about
8.8 per episode (standard deviation 5) and the best policy about 19.0. After ``STEPS`` agent
steps of training with the ``debug`` preset's tiny model and the paper's learning rates, train
ratio (512) and discount horizon (333), both the sampling evaluation policy
(:meth:`Trainer.evaluate`, the 2023 code's eval mode) and the greedy policy must beat the random
policy, measured here on the same environment, seed and number of episodes, by at least
``MARGIN``. docs/learning.md lists the margins measured over several seeds and the wall time.

Run one seed by hand (prints both returns)::

  .venv/bin/python tests/learning/test_learning.py --seed=1
  .venv/bin/python tests/learning/test_learning.py --seed=1 --env=gym_goal_line_env:GoalLineContinuous-v0
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import concurrent.futures
import json
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE) not in sys.path:
  sys.path.insert(0, str(HERE))  # Makes goal_line_env importable, as a user's own package would be.

ENV = "gym_goal_line_env:GoalLine-v0"
CONTINUOUS_ENV = "gym_goal_line_env:GoalLineContinuous-v0"
STEPS = 2500
EPISODES = 30
MARGIN = 5.0
# The debug preset's tiny model with the paper's hyperparameters: its learning rates (the
# defaults), its train ratio of 512 (the debug preset has 32): 8 updates of a 4 x 16 batch per
# agent step, about 19,500 in all. XLA runs these tiny updates several times faster on a CPU.
OVERRIDES = (
  "run.train_ratio=512",
  "run.jit_compile=true",
  "run.log_every_secs=1000",
  "run.checkpoint_every_secs=100000",
)


# The current generation (issue 18): `--configs=nature,debug`, its own hyperparameters (one LaProp,
# lr 4e-5 with a 1,000-update warm-up, REINFORCE for both action kinds, replay value loss) on the
# debug sizes, with the same train ratio, XLA and budget as the 2023 runs.
NATURE_PRESETS = ("nature", "debug")


def make_config(seed: int, extra=(), env: str = ENV, presets=("debug",)):
  from dreamer_tf.main import resolve_config

  return resolve_config(env, list(presets), [*OVERRIDES, *extra, f"run.seed={seed}"])


def random_policy_returns(config, episodes: int, env_name: str = ENV) -> list[float]:
  """Returns of a uniformly random policy on the evaluation environment of ``Trainer.evaluate``."""
  import tensorflow as tf
  from tf_agents.policies import random_tf_policy

  from dreamer_tf import envs as envs_lib
  from dreamer_tf.training import loop

  env = envs_lib.make_env(env_name, config, seed=config.run.seed + 10_000)  # The seed Trainer.evaluate uses.
  try:
    time_step_spec, action_spec = loop.specs_of(env)
    tf.random.set_seed(config.run.seed)
    policy = random_tf_policy.RandomTFPolicy(time_step_spec, action_spec)
    return [r["return"] for r in loop.evaluate(policy, env, episodes)]
  finally:
    env.close()


def train_and_compare(
  seed: int, logdir, steps: int = STEPS, extra=(), env: str = ENV, presets=("debug",)
) -> dict[str, float]:
  """Trains for ``steps`` steps; returns the mean sampled, greedy and random returns over ``EPISODES``."""
  from dreamer_tf import envs as envs_lib
  from dreamer_tf.training import loop

  config = make_config(seed, extra, env, presets)
  assert not config.run.eval_greedy  # Trainer.evaluate samples, as the 2023 code's eval mode.
  random_return = float(np.mean(random_policy_returns(config, EPISODES, env)))
  trainer = loop.Trainer(config, env, logdir)
  try:
    trainer.run(steps)
    sampled = trainer.evaluate(EPISODES)
    eval_env = envs_lib.make_env(env, config, seed=config.run.seed + 10_000)  # Trainer.evaluate's seed.
    try:
      greedy = loop.evaluate(trainer.agent.policy, eval_env, EPISODES)
    finally:
      eval_env.close()
  finally:
    trainer.close()
  assert len(sampled) == len(greedy) == EPISODES
  mean = lambda results: float(np.mean([r["return"] for r in results]))
  return {"sampled": mean(sampled), "greedy": mean(greedy), "random": random_return}


# The four runs are independent processes, at most two at a time with one CPU thread each: on the 2-core CI
# machine a tiny XLA update is bound by per-op overhead on one thread, so two side by side take about the
# time of one, and a run does not share its process's state with the other tests.
RUNS = {
  "test_policy_beats_random_on_goal_line[discrete]": (ENV, False),
  "test_policy_beats_random_on_goal_line[continuous]": (CONTINUOUS_ENV, False),
  "test_nature_policy_beats_random_on_goal_line[discrete]": (ENV, True),
  "test_nature_policy_beats_random_on_goal_line[continuous]": (CONTINUOUS_ENV, True),
}
PARALLEL_RUNS = 2
ONE_THREAD = {
  "TF_NUM_INTRAOP_THREADS": "1",
  "TF_NUM_INTEROP_THREADS": "1",
  "OMP_NUM_THREADS": "1",
  "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}


def _run_in_subprocess(env: str, nature: bool, out_dir: pathlib.Path) -> dict[str, float]:
  """Runs this file's ``__main__`` for seed 0 in its own process; returns its sampled, greedy and random returns."""
  out_dir.mkdir(parents=True, exist_ok=True)
  result = out_dir / "returns.json"
  cmd = [sys.executable, __file__, "--seed=0", f"--env={env}", f"--logdir={out_dir / 'run'}", f"--json={result}"]
  cmd += ["--nature"] if nature else []
  proc = subprocess.run(cmd, env={**os.environ, **ONE_THREAD}, capture_output=True, text=True)
  if proc.returncode or not result.exists():
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
    raise AssertionError(f"the learning run {' '.join(cmd)} failed (exit {proc.returncode}):\n{tail}")
  return json.loads(result.read_text())


@pytest.fixture(scope="module")
def learning_runs(request, tmp_path_factory):
  """Starts the selected learning runs, ``PARALLEL_RUNS`` at a time; ``{test name: future of its returns}``."""
  selected = [item.name for item in request.session.items if item.name in RUNS and item.module.__file__ == __file__]
  # The slowest (the current generation's) first, so that the two lanes end close together.
  selected.sort(key=lambda name: not RUNS[name][1])
  pool = concurrent.futures.ThreadPoolExecutor(max_workers=PARALLEL_RUNS)
  root = tmp_path_factory.mktemp("learning")
  futures = {
    name: pool.submit(_run_in_subprocess, *RUNS[name], root / name.replace("[", "_").rstrip("]")) for name in selected
  }
  yield futures
  pool.shutdown(wait=True, cancel_futures=True)


def _check_margin(request, learning_runs, label: str):
  returns = learning_runs[request.node.name].result()
  print(f"{label} after {STEPS} steps: " + ", ".join(f"{k} {v:.2f}" for k, v in returns.items()))
  for mode in ("sampled", "greedy"):
    assert returns[mode] >= returns["random"] + MARGIN, (
      f"{label}: after {STEPS} steps the {mode} policy's mean return {returns[mode]:.2f} over {EPISODES} episodes "
      f"is not at least {MARGIN} above the random policy's {returns['random']:.2f}"
    )


@pytest.mark.slow
@pytest.mark.parametrize("env", [ENV, CONTINUOUS_ENV], ids=["discrete", "continuous"])
def test_policy_beats_random_on_goal_line(request, learning_runs, env):
  """Discrete actions train the actor with REINFORCE, continuous ones by dynamics backpropagation."""
  _check_margin(request, learning_runs, env)


@pytest.mark.slow
@pytest.mark.parametrize("env", [ENV, CONTINUOUS_ENV], ids=["discrete", "continuous"])
def test_nature_policy_beats_random_on_goal_line(request, learning_runs, env):
  """The current generation (--configs=nature,debug) learns the same tasks within the same budget."""
  _check_margin(request, learning_runs, f"nature {env}")


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description="Runs the learning test for one seed and prints the returns.")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--logdir", default=None, help="Run directory (default: a temporary one).")
  parser.add_argument("--steps", type=int, default=STEPS)
  parser.add_argument("--env", default=ENV, help="e.g. gym_goal_line_env:GoalLineContinuous-v0")
  parser.add_argument("--override", action="append", default=[], help="Extra config overrides.")
  parser.add_argument("--nature", action="store_true", help="Train the current generation (--configs=nature,debug).")
  parser.add_argument("--json", default=None, help="Also write the returns to this JSON file.")
  args = parser.parse_args()
  start = time.time()
  with tempfile.TemporaryDirectory() as tmp:
    logdir = args.logdir or pathlib.Path(tmp) / "run"
    presets = NATURE_PRESETS if args.nature else ("debug",)
    returns = train_and_compare(args.seed, logdir, args.steps, args.override, args.env, presets)
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(returns))
  sampled, greedy, random = returns["sampled"], returns["greedy"], returns["random"]
  print(
    f"seed {args.seed}: sampled {sampled:.2f} (margin {sampled - random:+.2f}), greedy {greedy:.2f} "
    f"(margin {greedy - random:+.2f}), random {random:.2f} (required margin {MARGIN}), {time.time() - start:.0f}s"
  )
