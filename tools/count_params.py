"""Prints the trainable parameter counts of the agent built for an environment.

The agent is built for the environment's observation and action specs, exactly as
training builds it. The counts per module (named as the author's current code names them) are
printed as JSON, then the totals of world model, actor and critic on the last line:

  python tools/count_params.py --configs=xs --env=atari100k_pong
  {"enc": ..., "dyn": ..., "dec": ..., "rew": ..., "con": ..., "pol": ..., "val": ...}
  {"world_model": 7538979, "actor": 329734, "critic": 393727}

  python tools/count_params.py --configs=nature,size12m --env=atari100k_pong --override=env.atari.actions=all
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MUJOCO_GL", "egl")


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--env", required=True, help="environment name, e.g. atari100k_pong")
  parser.add_argument("--configs", default="", help="comma-separated presets, e.g. xs or s,debug")
  parser.add_argument("--override", action="append", default=[], help="dotted.key=value (repeatable)")
  return parser.parse_args(argv)


def count(env_name: str, presets=(), overrides=(), per_module: bool = False) -> dict:
  """Builds the environment and the agent; returns ``{"world_model", "actor", "critic"}`` counts,
  or with ``per_module`` the counts of ``DreamerAgent.module_counts``."""

  from dreamer_tf.agent.dreamer_agent import DreamerAgent
  from dreamer_tf.envs import env_tensor_specs
  from dreamer_tf.main import resolve_config

  config = resolve_config(env_name, presets, overrides)
  agent = DreamerAgent(*env_tensor_specs(env_name, config), config)
  return agent.module_counts() if per_module else agent.parameter_counts()


def main(argv=None) -> int:
  args = parse_args(argv)
  from dreamer_tf.errors import UserError

  presets = [p for p in args.configs.split(",") if p.strip()]
  try:
    counts = count(args.env, presets, args.override, per_module=True)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  world_model = sum(counts[k] for k in ("enc", "dyn", "dec", "rew", "con"))
  print(json.dumps(counts))
  print(json.dumps({"world_model": world_model, "actor": counts["pol"], "critic": counts["val"]}))
  return 0


if __name__ == "__main__":
  sys.exit(main())
