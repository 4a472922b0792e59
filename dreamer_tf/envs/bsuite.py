"""Behaviour Suite (bsuite, Osband et al. 2020): ``bsuite_<experiment>/<setting>``, e.g. ``bsuite_catch/0``.

The observation is flattened into a float32 ``vector`` (``mnist`` images included), the
action is a discrete int32. ``bsuite_catch`` means ``bsuite_catch/0``. Needs the optional
extra ``[bsuite]`` (bsuite==0.3.6).
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import io

import numpy as np
from tf_agents.specs import array_spec
from tf_agents.trajectories import time_step as ts

from dreamer_tf.envs.base import DictEnvironment, make_step
from dreamer_tf.errors import MissingDependencyError, UserError


def _import_bsuite():
  try:
    import bsuite
    import bsuite.bsuite
    import bsuite.sweep
  except ImportError:
    raise MissingDependencyError("bsuite", "bsuite_ environments", extra="bsuite") from None
  return bsuite


def ids() -> list[str]:
  """All bsuite ids, e.g. ``catch/0``."""
  return list(_import_bsuite().sweep.SWEEP)


def resolve_id(task: str) -> str:
  """``catch`` -> ``catch/0``; raises UserError for an unknown id, naming the closest."""
  valid = ids()
  bsuite_id = task if "/" in task else f"{task}/0"
  if bsuite_id in valid:
    return bsuite_id
  experiments = sorted({i.split("/")[0] for i in valid})
  experiment = bsuite_id.split("/")[0]
  if experiment in experiments:
    settings = [i for i in valid if i.startswith(experiment + "/")]
    raise UserError(f"unknown bsuite id '{bsuite_id}'; {experiment} has settings {settings[0]} .. {settings[-1]}")
  close = difflib.get_close_matches(experiment, experiments, n=1)
  hint = f"did you mean 'bsuite_{close[0]}/0'? " if close else ""
  raise UserError(
    f"unknown bsuite experiment '{experiment}'; {hint}valid: {', '.join(experiments)} (each with settings /0, /1, ...)"
  )


class BsuiteEnvironment(DictEnvironment):
  """A bsuite environment (a ``dm_env``) as a TF-Agents PyEnvironment.

  Args:
    bsuite_id: e.g. ``catch/0``.
    seed: Seeds the environment's randomness (added to the setting's own seed, if any).
  """

  def __init__(self, bsuite_id: str, seed: int = 0):
    super().__init__()
    bsuite = _import_bsuite()
    kwargs = dict(bsuite.sweep.SETTINGS[bsuite_id])
    experiment = bsuite_id.split("/")[0]
    constructor = bsuite.bsuite.EXPERIMENT_NAME_TO_ENVIRONMENT[experiment]
    if "seed" in inspect.signature(constructor).parameters:
      # Settings fix no seed (None) or their own; offset it so that runs are reproducible.
      kwargs["seed"] = int(kwargs.get("seed") or 0) + int(seed)
    with contextlib.redirect_stdout(io.StringIO()):  # bsuite prints "Loaded bsuite_id: ...".
      self._env = bsuite.load(experiment, kwargs)
    obs_spec = self._env.observation_spec()
    self._observation_spec = {
      "vector": array_spec.ArraySpec((int(np.prod(obs_spec.shape, dtype=np.int64)),), np.float32, name="vector")
    }
    act = self._env.action_spec()
    self._action_spec = array_spec.BoundedArraySpec((), np.int32, 0, int(act.num_values) - 1, name="action")

  def _observation(self, step):
    return {"vector": np.asarray(step.observation, np.float32).reshape(-1)}

  def _reset(self):
    return ts.restart(self._observation(self._env.reset()))

  def _step(self, action):
    step = self._env.step(int(action))
    last = step.last()
    return make_step(
      self._observation(step), float(step.reward or 0.0), last=last, terminal=last and step.discount == 0
    )

  def close(self):
    self._env.close()


def make(task: str, config, seed: int = 0) -> BsuiteEnvironment:
  """Builds ``bsuite_<id>``; ``config.env.bsuite`` has no settings yet."""
  del config
  return BsuiteEnvironment(resolve_id(task), seed=seed)
