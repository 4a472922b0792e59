"""Steps the author's own DeepMind Control environment with given actions, for ``parity.py env-check``.

Run by the tool with a reference venv's Python; it imports nothing from dreamer_tf and copies none of the
author's code. It builds the environment as the author's training script hands it to the agent: its
``embodied/envs/dmc.py`` ``DMC`` class (proprioception only, action repeat as given) around the suite task,
wrapped by the script's own ``wrap_env``, with one change: the suite task gets ``task_kwargs={'random':
SEED}`` so that both sides start their episodes from the same physics states (the author's code leaves it
unseeded). It resets, applies the actions in order (resetting after every last step, as its driver does)
and writes every step's non-``log/`` observation keys, ``reward``, ``is_first``, ``is_last`` and
``is_terminal`` to an ``.npz``.

Usage: ``parity_reference_env.py --generation=2023|current [--source=CHECKOUT] --task=DOMAIN_TASK --seed=S
--repeat=R --actions=ACTIONS.npy --out=STEPS.npz``
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import types

import numpy as np


def _parse(argv: list[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser()
  parser.add_argument("--generation", choices=("2023", "current"), required=True)
  parser.add_argument("--source", type=pathlib.Path, default=None, help="current: the author's checkout")
  parser.add_argument("--task", required=True, help="<domain>_<task>, e.g. cartpole_balance")
  parser.add_argument("--seed", type=int, required=True)
  parser.add_argument("--repeat", type=int, required=True)
  parser.add_argument("--actions", type=pathlib.Path, required=True)
  parser.add_argument("--out", type=pathlib.Path, required=True)
  args = parser.parse_args(argv)
  if args.generation == "current" and args.source is None:
    parser.error("--generation=current needs --source=CHECKOUT")
  return args


def _make_env(args: argparse.Namespace):
  """The author's DMC environment, as its training script wraps it."""
  os.environ.setdefault("MUJOCO_GL", "egl")
  from dm_control import suite

  domain, task = args.task.split("_", 1)
  if domain == "cup":  # The author's one multi-word domain.
    domain = "ball_in_cup"
  physics_env = suite.load(domain, task, task_kwargs={"random": args.seed})
  if args.generation == "current":
    sys.path.insert(0, str(args.source.resolve()))
    from dreamerv3 import main as script
    from embodied.envs.dmc import DMC

    return script.wrap_env(DMC(physics_env, repeat=args.repeat, image=False), None)
  from dreamerv3 import train as script
  from dreamerv3.embodied.envs.dmc import DMC

  # Its dmc_proprio runs: no time limit or discretisation of its own, space checks on.
  config = types.SimpleNamespace(wrapper=types.SimpleNamespace(discretize=0, length=0, reset=True, checks=True))
  return script.wrap_env(DMC(physics_env, repeat=args.repeat, render=False), config)


def main(argv: list[str]) -> None:
  args = _parse(argv)
  env = _make_env(args)
  actions = np.load(args.actions)
  keys = [k for k in env.obs_space if not k.startswith("log/") and k != "image"]
  steps = {k: [] for k in keys}
  obs = env.step({"action": np.zeros(actions.shape[1:], np.float32), "reset": True})
  for key in keys:
    steps[key].append(np.asarray(obs[key]))
  for action in actions:
    obs = env.step({"action": action.astype(np.float32), "reset": bool(obs["is_last"])})
    for key in keys:
      steps[key].append(np.asarray(obs[key]))
  args.out.parent.mkdir(parents=True, exist_ok=True)
  np.savez(args.out, **{k: np.stack(v) for k, v in steps.items()})
  print(f"wrote {len(steps['reward'])} steps of {args.task} (seed {args.seed}) to {args.out}")


if __name__ == "__main__":
  main(sys.argv[1:])
