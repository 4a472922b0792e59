"""A tiny deterministic agent and batches for the tf.distribute tests (imported by the scripts).

Deterministic means: one class per latent (``model.classes=1``) and one action, so every sample
of the train step (posterior, prior and action) is the same whatever the random seed. Then a
mirrored update and a single-device update of the same global batch must give the same weights
up to float rounding, although each replica draws its own random stream.
"""

import hashlib
import json

import numpy as np
import tensorflow as tf
from tf_agents.specs import tensor_spec

from dreamer_tf.agent.dreamer_agent import DreamerAgent, time_step_spec_from
from dreamer_tf.config import load_config

IMAGE = (8, 8, 3)
VECTOR = 3
BATCH, LENGTH = 4, 6


def tiny_config(deterministic=True, **changes):
  overrides = {
    "model.deter": 16,
    "model.units": 16,
    "model.stoch": 2,
    "model.classes": 1 if deterministic else 4,
    "model.cnn_depth": 2,
    "model.imag_horizon": 3,
    "model.model_opt.clip": 0.05,  # Small: clipping acts, so clipping before the sum would show.
    "replay.batch_size": BATCH,
    "replay.batch_length": LENGTH,
  }
  overrides.update(changes)
  return load_config("atari100k_pong", ["debug"]).update(overrides)


def specs(image=True, actions=1):
  obs = {"vector": tf.TensorSpec([VECTOR], tf.float32, "vector")}
  if image:
    obs["image"] = tf.TensorSpec(IMAGE, tf.uint8, "image")
  action = tensor_spec.BoundedTensorSpec([], tf.int32, 0, actions - 1, "action")
  return time_step_spec_from(obs), action


def build_agent(config, image=True, actions=1, seed=0):
  """Builds an agent with its own step counter (TF-Agents' default is the process-wide global step)."""
  time_step_spec, action_spec = specs(image, actions)
  counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="train_step")
  return DreamerAgent(time_step_spec, action_spec, config, seed=seed, train_step_counter=counter)


def make_batch(seed, batch=BATCH, length=LENGTH, image=True, actions=1):
  """A replay batch in the step format, nested dicts ``[B, T, ...]`` of NumPy arrays."""
  rng = np.random.default_rng(seed)
  obs = {"vector": rng.normal(size=(batch, length, VECTOR)).astype(np.float32)}
  if image:
    obs["image"] = rng.integers(0, 256, (batch, length, *IMAGE)).astype(np.uint8)
  is_first = np.zeros((batch, length), bool)
  is_first[:, 0] = True
  is_terminal = rng.random((batch, length)) < 0.1
  return {
    "obs": obs,
    "action": rng.integers(0, actions, (batch, length)).astype(np.int32),
    "reward": rng.normal(size=(batch, length)).astype(np.float32),
    "is_first": is_first,
    "is_last": is_terminal.copy(),
    "is_terminal": is_terminal,
  }


def state_variables(agent):
  """``{name: variable}`` of everything an update changes or reads (weights, optimizer slots, counters)."""
  out = {}
  for group, module in (("world_model", agent.world_model), ("actor_critic", agent.actor_critic)):
    for v in module.variables:
      out[f"{group}/{len(out)}:{v.name}"] = v
  for opt_name, opt in zip(("model_opt", "actor_opt", "critic_opt"), agent.optimizers):
    for v in opt.variables:
      out[f"{opt_name}/{len(out)}:{v.name}"] = v
  out["train_step_counter"] = agent.train_step_counter
  return out


def copy_state(source, target):
  """Copies every variable of ``source`` into ``target`` (same architecture)."""
  src, dst = state_variables(source), state_variables(target)
  assert src.keys() == dst.keys(), sorted(set(src) ^ set(dst))
  for name, v in src.items():
    dst[name].assign(v.numpy())


def values(agent):
  return {name: v.numpy() for name, v in state_variables(agent).items()}


def replica_values(variable):
  """The value of each replica's copy of a (possibly mirrored) variable."""
  parts = getattr(variable, "values", None) or (variable,)
  return [p.numpy() for p in parts]


def digest(agent):
  h = hashlib.sha256()
  for name, value in sorted(values(agent).items()):
    h.update(name.encode())
    h.update(np.ascontiguousarray(value).tobytes())
  return h.hexdigest()


def max_differences(a, b, skip=()):
  """``{name: max |a - b|}`` over variables present in both, except names containing ``skip``."""
  out = {}
  for name in a:
    if any(s in name for s in skip):
      continue
    out[name] = float(np.max(np.abs(a[name].astype(np.float64) - b[name].astype(np.float64)), initial=0.0))
  return out


def emit(result):
  """Prints the result line that the pytest side parses."""
  print("RESULT " + json.dumps(result), flush=True)
