"""The replay step format (docs/CONTRIBUTING.md) as TensorSpecs, and flat views of it.

A step is a nested dict ``{"obs": {key: ...}, "action", "reward", "is_first", "is_last",
"is_terminal"}``, and with the current generation's replay context (``replay.context=1``) also
``"latent": {"deter", "stoch"}``, the collect policy's posterior state after observing the step.
Replay stores it as flat columns named by their path (``obs/image``); the order of the columns is
the order of ``tf.nest.flatten`` (sorted dict keys).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from dreamer_tf.errors import UserError

FLAG_KEYS = ("is_first", "is_last", "is_terminal")
LATENT_KEY = "latent"  # The replay context's per-step latent columns: latent/deter, latent/stoch.
REPLAY_ID_KEY = "replay_id"  # Sampled windows' ids ([B] int64) in a batch, for the latents' write-back.


def latent_spec(deter: int, stoch: int, classes: int) -> dict:
  """The stored latent of one step: the RSSM's ``deter [deter]`` and ``stoch [stoch, classes]`` (float32)."""
  return {
    "deter": tf.TensorSpec((deter,), tf.float32, name=f"{LATENT_KEY}/deter"),
    "stoch": tf.TensorSpec((stoch, classes), tf.float32, name=f"{LATENT_KEY}/stoch"),
  }


def replay_step_spec(config, observation_spec: Mapping, action_spec) -> dict:
  """:func:`step_spec`, with the latent columns of :func:`latent_spec` when ``config.replay.context`` is on."""
  if not config.replay.context:
    return step_spec(observation_spec, action_spec)
  model = config.model
  return step_spec(observation_spec, action_spec, latent_spec(model.deter, model.stoch, model.classes))


def step_spec(observation_spec: Mapping, action_spec, latent: Mapping | None = None) -> dict:
  """Builds the replay data spec from an environment's observation and action specs.

  Args:
    observation_spec: A dict of ``ArraySpec``/``TensorSpec`` per observation key. Keys that
      start with ``log_`` are dropped (they are logged, never stored).
    action_spec: The environment's action spec: an integer scalar spec (discrete actions,
      stored as int32 ``[]``) or a float spec ``[A]`` (continuous, stored as float32).
    latent: Optional :func:`latent_spec`: the replay context's latent columns (``replay.context``).

  Returns:
    The nested dict of ``tf.TensorSpec`` describing one stored step.
  """
  obs = {}
  for key, spec in observation_spec.items():
    if key.startswith("log_"):
      continue
    dtype = np.dtype(tf.as_dtype(spec.dtype).as_numpy_dtype)
    dtype = np.uint8 if dtype == np.uint8 else (np.bool_ if dtype == np.bool_ else np.float32)
    obs[key] = tf.TensorSpec(tuple(spec.shape), tf.as_dtype(dtype), name=f"obs/{key}")
  if tf.as_dtype(action_spec.dtype).is_integer:
    action = tf.TensorSpec((), tf.int32, name="action")
  else:
    action = tf.TensorSpec(tuple(action_spec.shape), tf.float32, name="action")
  spec = {
    "obs": obs,
    "action": action,
    "reward": tf.TensorSpec((), tf.float32, name="reward"),
    "is_first": tf.TensorSpec((), tf.bool, name="is_first"),
    "is_last": tf.TensorSpec((), tf.bool, name="is_last"),
    "is_terminal": tf.TensorSpec((), tf.bool, name="is_terminal"),
  }
  if latent is not None:
    spec[LATENT_KEY] = dict(latent)
  return spec


def flatten_spec(spec: Mapping, prefix: str = "") -> list[tuple[str, tf.TensorSpec]]:
  """Flattens a nested dict spec into ``(path, TensorSpec)`` pairs in ``tf.nest`` order."""
  out = []
  for key in sorted(spec):
    value = spec[key]
    path = f"{prefix}{key}"
    if isinstance(value, Mapping):
      out.extend(flatten_spec(value, path + "/"))
    elif isinstance(value, tf.TensorSpec):
      out.append((path, value))
    else:
      raise UserError(f"replay data spec entry '{path}' is a {type(value).__name__}, expected tf.TensorSpec")
  return out


def plain_spec(spec: Mapping) -> dict:
  """A copy of a nested spec made of plain dicts (TF's tracking wrappers removed)."""
  return {k: plain_spec(v) if isinstance(v, Mapping) else v for k, v in spec.items()}


def spec_signature(spec: Mapping) -> dict[str, list]:
  """A JSON-friendly description ``{path: [dtype, shape]}`` used to validate checkpoints."""
  return {path: [s.dtype.name, list(s.shape.as_list())] for path, s in flatten_spec(spec)}


def get_path(nested: Mapping, path: str) -> Any:
  """Returns ``nested["a"]["b"]`` for the path ``a/b``."""
  value = nested
  for part in path.split("/"):
    value = value[part]
  return value


def unflatten(flat: Mapping[str, Any]) -> dict:
  """Turns ``{"obs/image": x, "reward": y}`` into ``{"obs": {"image": x}, "reward": y}``."""
  out: dict = {}
  for path, value in flat.items():
    node = out
    *parents, leaf = path.split("/")
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = value
  return out


def prefill_steps(config) -> int:
  """Agent steps that a uniformly random policy collects before the first update.

  The 2023 code prefills until its replay holds ``max(batch_steps, train_fill)`` *windows*
  (``embodied/run/train.py``; ``batch_steps = batch_size * batch_length``, ``train_fill``
  defaults to 0), and each environment's stream of ``n`` steps holds ``n - batch_length + 1``
  windows of ``batch_length`` steps. With ``E = run.envs`` copies stepped together that is
  ``E * (ceil(windows / E) + batch_length - 1)`` steps: 1,276 for batch 16 x 64 with 4 envs,
  1,087 with one (the 2023 code's collection in chunks of 100 steps rounds these up to 1,300
  and 1,100; the rounding is not carried). ``run.train_start`` is the 2023 ``train_fill``,
  in windows. With the replay context (``replay.context`` = K) a window is ``batch_length + K``
  steps long, as in the author's current code (its replay's ``length``), and the count is still
  ``batch_size * batch_length`` windows (its ``len(replay) < batch_size * batch_length``): 80 steps
  for 4 x 16 with one env and K = 1.
  """
  length = int(config.replay.batch_length) + int(config.replay.context)
  windows = max(int(config.replay.batch_size) * int(config.replay.batch_length), int(config.run.train_start))
  envs = int(config.run.envs)
  return envs * (-(-windows // envs) + length - 1)
