"""Shared by the agent tests: random replay batches in the step format, with the replay context's columns."""

import numpy as np
import tensorflow as tf


def random_batch(obs_spec, action_spec, batch, length, seed=0) -> dict:
  """A random replay batch ``[batch, length]`` in the step format (docs/CONTRIBUTING.md), NumPy arrays.

  Images are uint8, integer (discrete) observations class indices, other observations normal; the
  first step of every sequence is FIRST and sequence 1 ends with a termination.
  """
  rng = np.random.default_rng(seed)
  shape_BT = (batch, length)
  obs = {}
  for key, spec in obs_spec.items():
    shape = (*shape_BT, *spec.shape)
    if spec.dtype == tf.uint8:
      obs[key] = rng.integers(0, 256, size=shape).astype(np.uint8)
    elif spec.dtype.is_integer:
      obs[key] = rng.integers(0, int(spec.maximum) + 1, size=shape).astype(np.int32)
    else:
      obs[key] = rng.normal(size=shape).astype(np.float32)
  if action_spec.dtype.is_integer:
    action = rng.integers(action_spec.minimum, action_spec.maximum + 1, size=shape_BT).astype(np.int32)
  else:
    action = rng.uniform(-1, 1, size=(*shape_BT, *action_spec.shape)).astype(np.float32)
  is_first = np.zeros(shape_BT, bool)
  is_first[:, 0] = True
  is_terminal = np.zeros(shape_BT, bool)
  is_terminal[1, -1] = True
  return dict(
    obs=obs,
    action=action,
    reward=rng.normal(size=shape_BT).astype(np.float32),
    is_first=is_first,
    is_last=is_terminal.copy(),
    is_terminal=is_terminal,
  )


def with_replay_context(batch: dict, config, seed=0) -> dict:
  """Adds what a batch of ``config.replay.context`` = K > 0 carries: random stored latents and window ids.

  ``batch`` must hold K + T steps; ``latent/deter`` is normal, ``latent/stoch`` one-hot (as the RSSM
  samples it), ``replay_id`` is ``[B]`` int64. Step K - 1's latent starts the posterior, so the first K
  steps are context only (``DreamerAgent.split_context``).
  """
  if not config.replay.context:
    return batch
  rng = np.random.default_rng(seed + 1)
  model = config.model
  b, length = batch["reward"].shape
  batch["latent"] = {
    "deter": rng.normal(size=(b, length, model.deter)).astype(np.float32),
    "stoch": np.eye(model.classes, dtype=np.float32)[rng.integers(model.classes, size=(b, length, model.stoch))],
  }
  batch["replay_id"] = np.arange(b, dtype=np.int64)
  return batch
