"""Runs the author's current DreamerV3 code (danijar/dreamerv3 e3f0224) for ``parity.py run --generation=current``.

Run by the tool with the current code's venv Python; it imports nothing from dreamer_tf and copies none of
the author's code. The first argument is the checkout (``--source=CHECKOUT``), the rest are the author's own
flags for its ``dreamerv3/main.py`` (``--logdir DIR --task gymnasium_<id> --run.train_ratio 512 ...``): its
``defaults`` config, its ``embodied/run/train.py`` loop, its replay (``replay_context`` 1, online), no random
prefill. Around that unchanged script it only:

* builds the logger outputs: the terminal and ``metrics.jsonl`` as the script does (without its ``scope``
  output), plus ``episodes.jsonl`` with every finished episode (its agent step and return);
* adds a ``gymnasium_<id>`` suite: a small adapter from the gymnasium API (``reset() -> obs, info``;
  ``step() -> obs, reward, terminated, truncated, info``) to the author's environment interface, with the
  observation under ``vector`` and the action under ``action`` (its own ``gym_`` suite speaks the old API);
* times every ``Agent.train`` call and writes its seconds and agent step to ``updates.jsonl``, with the scalar
  metrics that call returns. The author's ``train`` is asynchronous: a call returns the metrics of the
  *previous* update, so each row names the update its metrics belong to (``metrics_of``), and the return
  scale ``max(1, hi - lo)`` of its return normaliser after that update (read from the parameters before the
  call; the author logs no metric for it). A call's seconds include waiting for the previous update;
* writes the parameter counts per module (``enc``, ``dyn``, ``dec``, ``rew``, ``con``, ``pol``, ``val``) to
  ``params.json``.

Agent steps are the author's step counter (every env step of every copy, the first resets included).
"""

from __future__ import annotations

import functools
import json
import pathlib
import sys
import time

import numpy as np
from parity_launcher_lib import gymnasium_env_class, logdir_of, scalars

_STATE = {"step": None, "calls": 0}


class EpisodeOutput:
  """A logger output that appends every finished episode to ``episodes.jsonl``."""

  def __init__(self, path: pathlib.Path):
    self._path = path

  def __call__(self, summaries):
    rows, row = [], None
    for step, name, value in summaries:
      if name not in ("episode/score", "episode/length") or np.asarray(value).ndim:
        continue
      key = name.split("/", 1)[1]
      if row is None or key in row:
        row = {"agent_step": int(step)}
        rows.append(row)
      row[key] = float(value)
    if rows:
      with self._path.open("a") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def _param_counts(params: dict) -> dict:
  """Trainable parameters per module (the slow value copy, the normalisers and the optimizer left out)."""
  counts = {}
  for name, value in params.items():
    module = name.split("/", 1)[0]
    if module in ("enc", "dyn", "dec", "rew", "con", "pol", "val"):
      counts[module] = counts.get(module, 0) + int(np.prod(value.shape))
  counts["world_model"] = sum(counts.get(k, 0) for k in ("enc", "dyn", "dec", "rew", "con"))
  counts["actor"], counts["critic"] = counts.get("pol", 0), counts.get("val", 0)
  return counts


def main(argv: list[str]) -> None:
  if not argv or not argv[0].startswith("--source="):
    raise SystemExit("error: the first argument is --source=CHECKOUT (danijar/dreamerv3 at e3f0224)")
  source, argv = pathlib.Path(argv[0].split("=", 1)[1]).resolve(), argv[1:]
  logdir = logdir_of(argv, "current-code launcher")
  logdir.mkdir(parents=True, exist_ok=True)
  sys.path.insert(0, str(source))
  import elements
  import embodied
  import embodied.jax
  from dreamerv3 import main as script

  def make_logger(config):
    step = elements.Counter()
    _STATE["step"] = step
    outputs = [
      elements.logger.TerminalOutput(config.logger.filter, "Agent"),
      elements.logger.JSONLOutput(config.logdir, "metrics.jsonl"),
      EpisodeOutput(logdir / "episodes.jsonl"),
    ]
    return elements.Logger(step, outputs, 1)

  original_make_env = script.make_env

  def make_env(config, index, **overrides):
    suite, task = config.task.split("_", 1)
    if suite != "gymnasium":
      return original_make_env(config, index, **overrides)
    return script.wrap_env(gymnasium_env_class(embodied.Env, elements.Space)(task), config)

  original_train = embodied.jax.Agent.train
  updates_path = logdir / "updates.jsonl"

  @functools.wraps(original_train)
  def train(self, carry, data):
    start = time.perf_counter()
    # The normaliser after the previous update (waits for it, as the call itself would for its metrics).
    lo, hi = (float(np.asarray(self.params[f"retnorm/{k}/value"])) for k in ("lo", "hi"))
    carry, outs, mets = original_train(self, carry, data)
    seconds = time.perf_counter() - start
    _STATE["calls"] += 1
    row = {"update": _STATE["calls"], "agent_step": int(_STATE["step"]), "seconds": seconds}
    if mets:
      row.update(scalars(mets), metrics_of=_STATE["calls"] - 1, retnorm_scale=max(1.0, hi - lo))
    with updates_path.open("a") as f:
      f.write(json.dumps(row) + "\n")
    if _STATE["calls"] == 1:
      (logdir / "params.json").write_text(json.dumps(_param_counts(self.params)))
    return carry, outs, mets

  script.make_logger = make_logger
  script.make_env = make_env
  embodied.jax.Agent.train = train
  script.main(argv)


if __name__ == "__main__":
  main(sys.argv[1:])
