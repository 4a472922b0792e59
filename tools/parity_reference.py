"""Runs the author's 2023 train script (dreamerv3==1.5.0) for tools/parity.py, in the reference's venv.

Run by ``tools/parity.py run`` with the reference venv's Python; it imports nothing from
dreamer_tf and copies none of the reference's code. The arguments are the reference's own flags
(``--configs dmc_proprio --task dmc_cartpole_balance --logdir DIR ...``). Around the unchanged
train script it only:

* builds the logger outputs without TensorBoard (there is no TensorFlow in this venv): the
  terminal, ``metrics.jsonl`` and ``scores.jsonl`` as the script does, plus ``episodes.jsonl``
  with every finished episode (the script's JSONL output keeps one row per step, so episodes that
  end on the same step would be lost);
* adds a ``gymnasium_<id>`` suite: a small adapter from the gymnasium API (``reset() -> obs,
  info``; ``step() -> obs, reward, terminated, truncated, info``) to the reference's environment
  interface, with the observation under ``vector`` and the action under ``action``;
* times every ``agent.train`` call and writes its scalar metrics, the seconds it took, the agent
  step and the return scale ``max(1, high - low)`` of the return normaliser to ``updates.jsonl``,
  and the parameter counts of its optimizers to ``params.json``.

Agent steps in these files are the reference's step counter (every env step of every copy, the
first resets included); its logged ``step`` is that counter times the action repeat.
"""

from __future__ import annotations

import functools
import json
import pathlib
import re
import sys
import time

import numpy as np
from parity_launcher_lib import gymnasium_env_class, logdir_of, scalars

_STATE = {"step": None, "updates": 0}


class EpisodeOutput:
  """A logger output that appends every finished episode to ``episodes.jsonl``."""

  def __init__(self, path: pathlib.Path, multiplier: int):
    self._path = path
    self._multiplier = multiplier

  def __call__(self, summaries):
    rows, row = [], None
    for step, name, value in summaries:
      if not name.startswith("episode/") or np.asarray(value).ndim:
        continue
      if name == "episode/length" or row is None:
        row = {"agent_step": int(step) // self._multiplier}
        rows.append(row)
      row[name.split("/", 1)[1]] = float(value)
    if rows:
      with self._path.open("a") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def main(argv: list[str]) -> None:
  logdir = logdir_of(argv, "reference launcher")
  logdir.mkdir(parents=True, exist_ok=True)
  import dreamerv3  # noqa: F401  (puts the reference's embodied package on sys.path)
  import embodied
  from dreamerv3 import agent as agt
  from dreamerv3 import jaxutils
  from dreamerv3 import train as script

  def make_logger(parsed, logdir, step, config):
    del parsed
    _STATE["step"] = step
    multiplier = config.env.get(config.task.split("_")[0], {}).get("repeat", 1)
    outputs = [
      embodied.logger.TerminalOutput(config.filter),
      embodied.logger.JSONLOutput(logdir, "metrics.jsonl"),
      embodied.logger.JSONLOutput(logdir, "scores.jsonl", "episode/score"),
      EpisodeOutput(pathlib.Path(str(logdir)) / "episodes.jsonl", multiplier),
    ]
    return embodied.Logger(step, outputs, multiplier)

  original_make_env = script.make_env

  def make_env(config, **overrides):
    suite, task = config.task.split("_", 1)
    if suite != "gymnasium":
      return original_make_env(config, **overrides)
    return script.wrap_env(gymnasium_env_class(embodied.Env, embodied.Space)(task), config)

  original_train = agt.Agent.train
  updates_path = logdir / "updates.jsonl"

  @functools.wraps(original_train)
  def train(self, data, state=None):
    start = time.perf_counter()
    outs, state, mets = original_train(self, data, state)
    seconds = time.perf_counter() - start
    _STATE["updates"] += 1
    row = {"update": _STATE["updates"], "agent_step": int(_STATE["step"]), "seconds": seconds}
    row.update(scalars(mets))
    bounds = {}
    for name, value in self.varibs.items():
      match = re.search(r"retnorm[^/]*/(low|high)(/value)?$", name)
      if match:
        bounds[match.group(1)] = float(np.asarray(value))
    if len(bounds) == 2:
      row["retnorm_scale"] = max(1.0, bounds["high"] - bounds["low"])
    with updates_path.open("a") as f:
      f.write(json.dumps(row) + "\n")
    if _STATE["updates"] == 1:
      counts = {name.split("/")[-1]: int(n) for name, n in jaxutils.Optimizer.PARAM_COUNTS.items() if n}
      (logdir / "params.json").write_text(json.dumps(counts))
    return outs, state, mets

  script.make_logger = make_logger
  script.make_env = make_env
  agt.Agent.train = train
  script.main(argv)


if __name__ == "__main__":
  main(sys.argv[1:])
