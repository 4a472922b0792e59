"""Measures environment steps per second with each suite's preprocessing.

Random actions through the same ``make_env`` the agent uses, so the figures include
action repeat, max-pooling, rendering and resizing. One agent step may be several
emulator frames (``frames/s`` = steps/s x action repeat).

  python tools/env_speed.py --env=atari_pong --env=dmc_walker_walk --steps=1000 --json=speed.json
  python tools/env_speed.py --env=all --steps=500
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np

from dreamer_tf.config import load_config
from dreamer_tf.envs import has_image_observation, make_env, parse_name
from dreamer_tf.errors import UserError

ALL = [
  "atari_pong",
  "atari100k_pong",
  "dmc_walker_walk",
  "dmcproprio_walker_walk",
  "crafter_reward",
  "gym_CartPole-v1",
  "bsuite_catch/0",
  "procgen_coinrun",
]


def _repeat(name: str, config) -> int:
  suite, _ = parse_name(name)
  if suite in ("atari", "atari100k"):
    return config.env.atari.repeat
  if suite in ("dmc", "dmcproprio"):
    return config.env.dmc.repeat
  if suite == "gym":
    return config.env.gym.repeat
  return 1


def measure(name: str, steps: int, seed: int = 0, overrides=()) -> dict:
  """Runs ``steps`` random-action steps of ``name``; returns its timing record."""
  has_image = has_image_observation(name, load_config()) if name.startswith("gym_") else None
  config = load_config(name, overrides=overrides, has_image=has_image)
  start = time.perf_counter()
  env = make_env(name, config, seed=seed)
  env.reset()
  startup = time.perf_counter() - start
  spec = env.action_spec()
  rng = np.random.default_rng(seed)
  discrete = np.issubdtype(spec.dtype, np.integer)
  actions = (
    rng.integers(spec.minimum, spec.maximum + 1, size=steps).astype(np.int32)
    if discrete
    else rng.uniform(-1, 1, size=(steps,) + spec.shape).astype(np.float32)
  )
  episodes = 0
  start = time.perf_counter()
  for action in actions:
    episodes += bool(env.step(action).is_last())
  seconds = time.perf_counter() - start
  env.close()
  repeat = _repeat(name, config)
  specs = env.observation_spec().items()
  obs = ", ".join(f"{k}{list(s.shape)}" for k, s in specs if not k.startswith("log_"))
  return {
    "env": name,
    "steps": steps,
    "seconds": round(seconds, 3),
    "steps_per_sec": round(steps / seconds, 1),
    "repeat": repeat,
    "frames_per_sec": round(steps * repeat / seconds, 1),
    "episodes_ended": episodes,
    "startup_sec": round(startup, 2),
    "observation": obs,
  }


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    "--env", action="append", required=True, help="environment name (repeatable, comma-separated, or 'all')"
  )
  parser.add_argument("--steps", type=int, default=1000, help="agent steps per environment")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--override", action="append", default=[], help="config override, dotted.key=value")
  parser.add_argument("--json", default="", help="also write the records to this JSON file")
  args = parser.parse_args(argv)
  names = [n for arg in args.env for n in arg.split(",") if n]
  names = [n for name in names for n in (ALL if name == "all" else [name])]
  records = []
  header = f"{'env':<28} {'steps/s':>9} {'frames/s':>9} {'repeat':>6} {'startup s':>9}  observation"
  print(header)
  print("-" * len(header))
  for name in names:
    try:
      record = measure(name, args.steps, args.seed, args.override)
    except UserError as e:
      print(f"{name:<28} skipped: {e}")
      records.append({"env": name, "error": str(e)})
      continue
    records.append(record)
    print(
      f"{name:<28} {record['steps_per_sec']:>9.1f} {record['frames_per_sec']:>9.1f} "
      f"{record['repeat']:>6} {record['startup_sec']:>9.2f}  {record['observation']}"
    )
  if args.json:
    meta = {
      "python": platform.python_version(),
      "machine": platform.machine(),
      "cpus": os.cpu_count(),
      "steps": args.steps,
    }
    with open(args.json, "w") as f:
      json.dump({"meta": meta, "results": records}, f, indent=2)
    print(f"wrote {args.json}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
