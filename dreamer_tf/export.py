"""SavedModel export of the acting policy for TF Serving.

``python -m dreamer_tf.export --logdir=DIR [--checkpoint=PATH] --output=saved_models/NAME`` restores
the agent of a training run and writes ``saved_models/NAME/<version>/``, the directory layout that
TF Serving watches (a new version on every export; see ``docs/serving.md``). Library use::

  path = export_policy(agent, config, env_name, "saved_models/pong")

The export is a plain ``tf.Module`` whose ``tf.function`` s have fixed input signatures; it holds
only the variables the policy needs (the world model's encoder and RSSM, and the actor) and no
TF-Agents or TFP types, so it loads with TensorFlow alone. Signatures:

* ``action`` (also ``serving_default``): inputs are the observation keys (``log_`` keys excluded),
  ``is_first`` (bool ``[B]``), the policy state ``deter`` ``[B, deter]``, ``stoch``
  ``[B, stoch, classes]`` and ``prev_action`` ``[B, A]`` (float32), ``greedy`` (bool scalar,
  default true: the actor's mode, else a sample) and ``seed`` (int64 scalar, default -1: a fresh
  random seed on each call; ``seed >= 0`` makes the call deterministic). Outputs are ``action``
  (int32 ``[B]`` or float32 ``[B, A]``) and the new state ``deter``, ``stoch``, ``prev_action``.
* ``get_initial_state``: ``batch_size`` (int32 scalar) -> the zero state. On steps with
  ``is_first`` true the RSSM replaces the state by its initial state (the 2023 generation's learned
  one; zeros, and a zero previous action, in the current generation), so an episode starts with
  ``is_first=True``.
* ``get_metadata``: ``request`` (int32 scalar, ignored; TF Serving's REST API needs one input) ->
  ``config`` (YAML), ``env_name``, ``train_step`` (int64), ``observation_spec``, ``action_spec``
  and ``policy_state_spec`` (JSON) and ``metadata`` (all of it as one JSON document, also written
  to ``assets.extra/dreamer_metadata.json``; its ``generation`` is ``'2023'``, ``'nature'`` or
  ``'mixed'``, see :func:`dreamer_tf.config.generation`).

Both generations export the same signatures; the current generation's policy state has the same
keys (``deter`` of its block GRU, ``stoch``, ``prev_action``).

The batch size is polymorphic; the scalar inputs (``greedy``, ``seed``, ``batch_size``) are declared
with shape ``[]``. Inputs are validated inside the graph, so a wrong shape, a state of the wrong
size or mismatched batch sizes fail with a message naming the input even where the caller (TF
Serving's C++ session) does not check shapes against the signature.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import re
import shutil
import sys
import uuid
from collections.abc import Sequence

import tensorflow as tf

from dreamer_tf import config as config_lib
from dreamer_tf.errors import UserError

FORMAT_VERSION = 1
ACTION_SIGNATURE = "action"
INITIAL_STATE_SIGNATURE = "get_initial_state"
METADATA_SIGNATURE = "get_metadata"
STATE_KEYS = ("deter", "stoch", "prev_action")
CONTROL_KEYS = ("is_first", "greedy", "seed")
METADATA_FILE = "assets.extra/dreamer_metadata.json"
# Second word of the stateless seed derived from the ``seed`` input (see seed_pair).
SEED_SALT = 0x5EED

_VERSION_RE = re.compile(r"^\d+$")
_log = logging.getLogger(__name__)


def seed_pair(seed):
  """The shape ``[2]`` int64 stateless seed that the export derives from a scalar ``seed >= 0``.

  ``DreamerPolicy.step(obs, is_first, state, seed_pair(s), greedy)`` in process gives the same
  result as the exported ``action`` signature called with ``seed=s``.
  """
  seed = tf.cast(seed, tf.int64)
  return tf.stack([seed, tf.constant(SEED_SALT, tf.int64)])


def _spec_json(spec) -> dict:
  out = {"shape": [int(d) for d in spec.shape], "dtype": tf.as_dtype(spec.dtype).name}
  if hasattr(spec, "minimum") and hasattr(spec, "maximum"):
    import numpy as np

    lo, hi = np.asarray(spec.minimum), np.asarray(spec.maximum)
    out["minimum"] = lo.tolist()
    out["maximum"] = hi.tolist()
  return out


def _check_shape(name: str, x, dims: Sequence[int], batched: bool = True):
  """An in-graph assertion that ``x`` has shape ``[batch, *dims]`` (or ``dims``), naming ``name``.

  Uses raw ``Shape``/``Size`` ops so that Python-side constant folding of the (static) signature
  shape cannot remove the check: TF Serving feeds tensors without comparing their shapes to the
  signature's.
  """
  expected = ([-1] if batched else []) + [int(d) for d in dims]
  rank = len(expected)
  shape = tf.raw_ops.Shape(input=x, out_type=tf.int32)
  rank_ok = tf.equal(tf.raw_ops.Size(input=shape, out_type=tf.int32), rank)
  padded = tf.concat([shape, tf.fill([rank], -2)], 0)[:rank]
  want = tf.constant(expected, tf.int32, shape=[rank])
  dims_ok = tf.reduce_all(tf.logical_or(tf.equal(padded, want), tf.equal(want, -1)))
  text = "[" + ", ".join("batch" if d == -1 else str(d) for d in expected) + "]"
  text = "a scalar (shape [])" if not expected else f"shape {text}"
  return tf.debugging.Assert(
    tf.logical_and(rank_ok, dims_ok),
    [f"input {name} must have {text}, got shape", shape],
    name=f"check_{name}_shape",
  )


def _check_batch(name: str, x, ref_name: str, ref):
  size = lambda t: tf.concat([tf.raw_ops.Shape(input=t, out_type=tf.int32), [-1]], 0)[0]
  return tf.debugging.Assert(
    tf.equal(size(x), size(ref)),
    [f"input {name} has batch size", size(x), f"but input {ref_name} has batch size", size(ref)],
    name=f"check_{name}_batch",
  )


def _check_finite(name: str, x):
  """An in-graph assertion that ``x`` holds no NaN or Inf, whatever its (possibly wrong) shape.

  Flattened first: a plain ``reduce_all`` reduces over the axes of the signature's static rank and
  would fail on a wrongly ranked input before ``_check_shape`` (run in parallel) can name it.
  """
  finite = tf.math.is_finite(tf.reshape(x, [-1]))
  return tf.debugging.Assert(
    tf.reduce_all(finite), [f"input {name} holds NaN or Inf values"], name=f"check_{name}_finite"
  )


class _Untracked:
  """Holds Python objects out of reach of tf.Module's dependency tracking."""

  def __init__(self, **items):
    self.__dict__.update(items)


class ExportedPolicy(tf.Module):
  """The acting policy as a TensorFlow-only module with TF Serving signatures.

  Tracks only the variables of the encoder, the RSSM and the actor; the computation is
  ``DreamerPolicy.step`` itself, so the export acts exactly like the in-process policy.

  Args:
    agent: A :class:`~dreamer_tf.agent.dreamer_agent.DreamerAgent`.
    config: The resolved configuration (stored as YAML in the metadata).
    env_name: The ``--env`` name.
    train_step: The training step (updates) recorded in the metadata.
  """

  def __init__(self, agent, config, env_name: str, train_step: int):
    super().__init__(name="dreamer_policy")
    policy = agent.policy
    wm = agent.world_model
    rssm = wm.rssm
    actor = agent.actor_critic.actor
    # Only the variables: tracking the Keras layers would make the SavedModel serialize them too.
    self.policy_variables = list(wm.encoder.variables) + list(rssm.variables) + list(actor.variables)
    obs_spec = agent.time_step_spec.observation
    self._obs_keys = sorted(k for k in obs_spec if not k.startswith("log_"))
    clash = sorted(set(self._obs_keys) & set(STATE_KEYS + CONTROL_KEYS))
    if clash:
      raise UserError(
        f"observation key(s) {clash} clash with the export's input names {list(STATE_KEYS + CONTROL_KEYS)}; "
        "rename them in the environment wrapper"
      )
    action_spec = agent.action_spec
    self._state_dims = {
      "deter": [rssm.deter],
      "stoch": [rssm.stoch, rssm.classes],
      "prev_action": [int(policy.policy_state_spec["prev_action"].shape[0])],
    }
    self._obs_dims = {k: [int(d) for d in obs_spec[k].shape] for k in self._obs_keys}
    self._impl = _Untracked(step=policy.step)

    discrete = action_spec.dtype.is_integer
    metadata = {
      "format_version": FORMAT_VERSION,
      "env_name": env_name,
      "generation": config_lib.generation(config),
      "train_step": int(train_step),
      "observation_spec": {k: _spec_json(obs_spec[k]) for k in self._obs_keys},
      "action_spec": {**_spec_json(action_spec), "discrete": bool(discrete)},
      "policy_state_spec": {k: {"shape": v, "dtype": "float32"} for k, v in self._state_dims.items()},
      "signatures": {
        ACTION_SIGNATURE: {
          "inputs": self._obs_keys + ["is_first", *STATE_KEYS, "greedy", "seed"],
          "outputs": ["action", *STATE_KEYS],
        },
        INITIAL_STATE_SIGNATURE: {"inputs": ["batch_size"], "outputs": list(STATE_KEYS)},
        METADATA_SIGNATURE: {"inputs": ["request"]},
      },
      "seed": f"seed >= 0: stateless seed [seed, {SEED_SALT}]; seed < 0: random",
    }
    import dreamer_tf

    metadata["dreamer_tf_version"] = dreamer_tf.__version__
    self.metadata = _Untracked(value=metadata)
    self._config_yaml = config.to_yaml() if hasattr(config, "to_yaml") else json.dumps(dict(config))

    specs = {k: tf.TensorSpec([None, *self._obs_dims[k]], obs_spec[k].dtype, k) for k in self._obs_keys}
    specs["is_first"] = tf.TensorSpec([None], tf.bool, "is_first")
    for key, dims in self._state_dims.items():
      specs[key] = tf.TensorSpec([None, *dims], tf.float32, key)
    self.action = tf.function(
      self._action,
      input_signature=[specs, tf.TensorSpec([], tf.bool, "greedy"), tf.TensorSpec([], tf.int64, "seed")],
    )
    self.get_initial_state = tf.function(
      self._get_initial_state, input_signature=[tf.TensorSpec([], tf.int32, "batch_size")]
    )
    self.get_metadata = tf.function(self._get_metadata, input_signature=[tf.TensorSpec([], tf.int32, "request")])

  @property
  def signatures(self) -> dict:
    """The ``signatures`` argument of ``tf.saved_model.save``."""
    return {
      "serving_default": self.action,
      ACTION_SIGNATURE: self.action,
      INITIAL_STATE_SIGNATURE: self.get_initial_state,
      METADATA_SIGNATURE: self.get_metadata,
    }

  def _validate(self, inputs, greedy, seed):
    checks = []
    ref = self._obs_keys[0] if self._obs_keys else "is_first"
    for key in self._obs_keys:
      checks.append(_check_shape(key, inputs[key], self._obs_dims[key]))
      if inputs[key].dtype.is_floating:
        checks.append(_check_finite(key, inputs[key]))
    checks.append(_check_shape("is_first", inputs["is_first"], []))
    for key, dims in self._state_dims.items():
      checks.append(_check_shape(key, inputs[key], dims))
      checks.append(_check_finite(key, inputs[key]))
    for key in [*self._obs_keys, "is_first", *STATE_KEYS]:
      if key != ref:
        checks.append(_check_batch(key, inputs[key], ref, inputs[ref]))
    checks.append(_check_shape("greedy", greedy, [], batched=False))
    checks.append(_check_shape("seed", seed, [], batched=False))
    return checks

  # Tensor defaults become the SignatureDef's `defaults`, which TF Serving uses for inputs left out.
  def _action(self, inputs, greedy=tf.constant(True), seed=tf.constant(-1, tf.int64)):  # noqa: B008
    with tf.control_dependencies(self._validate(inputs, greedy, seed)):
      inputs = {k: tf.identity(v) for k, v in inputs.items()}
      # The signature declares the flags as scalars, but a server feeds whatever shape a request
      # holds. Flattened and reduced to true scalars, so that a wrongly shaped flag cannot fail
      # inside a lowered tf.cond (whose predicate does not wait for the checks) before its own
      # check names it; a plain reduce_any of a static scalar would reduce over no axis.
      greedy = tf.reduce_any(tf.reshape(greedy, [-1]))
      seed = tf.reduce_max(tf.concat([tf.reshape(seed, [-1]), [-1]], 0))
    obs = {k: inputs[k] for k in self._obs_keys}
    state = {k: inputs[k] for k in STATE_KEYS}
    random_seed = lambda: tf.random.uniform([2], 0, tf.int64.max, dtype=tf.int64)
    pair = tf.cond(seed < 0, random_seed, lambda: seed_pair(seed))
    action, new_state = self._impl.step(obs, inputs["is_first"], state, pair, greedy)
    return {"action": tf.identity(action, name="action"), **{k: new_state[k] for k in STATE_KEYS}}

  def _get_initial_state(self, batch_size):
    with tf.control_dependencies([_check_shape("batch_size", batch_size, [], batched=False)]):
      batch_size = tf.reduce_max(tf.concat([tf.reshape(batch_size, [-1]), [-1]], 0))
    check = tf.debugging.Assert(
      tf.greater_equal(batch_size, 0), ["input batch_size must be a scalar >= 0, got", batch_size]
    )
    with tf.control_dependencies([check]):
      batch_size = tf.identity(batch_size)
    return {k: tf.zeros(tf.concat([[batch_size], dims], 0), tf.float32) for k, dims in self._state_dims.items()}

  def _get_metadata(self, request=tf.constant(0, tf.int32)):  # noqa: B008
    del request
    meta = self.metadata.value
    dump = lambda x: tf.constant(json.dumps(x, sort_keys=True))
    return {
      "config": tf.constant(self._config_yaml),
      "env_name": tf.constant(meta["env_name"]),
      "train_step": tf.constant(meta["train_step"], tf.int64),
      "observation_spec": dump(meta["observation_spec"]),
      "action_spec": dump(meta["action_spec"]),
      "policy_state_spec": dump(meta["policy_state_spec"]),
      "metadata": dump(meta),
    }


def list_versions(output_dir: str | os.PathLike) -> list[int]:
  """The version numbers under ``output_dir`` (directories named by an integer), ascending."""
  path = pathlib.Path(output_dir)
  if not path.is_dir():
    return []
  return sorted(int(p.name) for p in path.iterdir() if p.is_dir() and _VERSION_RE.match(p.name))


def _fsync_dir(path: pathlib.Path) -> None:
  _fsync_tree(path, recursive=False)


def _fsync_tree(root: pathlib.Path, recursive: bool = True) -> None:
  """Flushes the files and directories below ``root`` to disk (best effort for directories)."""
  paths = sorted(root.rglob("*"), reverse=True) if recursive else []
  for path in paths + [root]:
    try:
      fd = os.open(path, os.O_RDONLY)
    except OSError:
      continue
    try:
      os.fsync(fd)
    except OSError:
      pass
    finally:
      os.close(fd)


def export_policy(
  agent, config, env_name: str, output_dir: str | os.PathLike, train_step: int | None = None, keep: int | None = None
) -> pathlib.Path:
  """Exports the agent's policy as ``<output_dir>/<version>/``, a new version each call.

  The SavedModel is written to a hidden temporary directory beside the versions (TF Serving
  ignores names that are not integers), flushed to disk and renamed to the next version number
  (one more than the largest present) in one atomic step, so TF Serving never sees a partial
  model.

  Args:
    agent: The :class:`~dreamer_tf.agent.dreamer_agent.DreamerAgent`.
    config: The resolved configuration.
    env_name: The ``--env`` name (stored in the metadata).
    output_dir: The model's base path, e.g. ``saved_models/pong``.
    train_step: The step recorded in the metadata; default the agent's ``train_step_counter``.
    keep: Keep only this many newest versions (None keeps all).

  Returns:
    The new version directory.
  """
  if keep is not None and keep < 1:
    raise UserError(f"keep must be at least 1 export version, got {keep}")
  if train_step is None:
    train_step = int(agent.train_step_counter.numpy())
  output_dir = pathlib.Path(output_dir)
  try:
    output_dir.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise UserError(f"cannot create export directory {output_dir}: {e.strerror}; pass a writable --output") from None
  module = ExportedPolicy(agent, config, env_name, train_step)
  tmp = output_dir / f".tmp-export-{os.getpid()}-{uuid.uuid4().hex[:8]}"
  try:
    tf.saved_model.save(module, str(tmp), signatures=module.signatures)
    extra = tmp / METADATA_FILE
    extra.parent.mkdir(parents=True, exist_ok=True)
    extra.write_text(json.dumps(module.metadata.value, indent=1, sort_keys=True) + "\n")
    _fsync_tree(tmp)
    version = max(list_versions(output_dir), default=0) + 1
    while True:
      final = output_dir / str(version)
      if not final.exists():  # rename() would replace an empty directory: never reuse a name.
        try:
          os.rename(tmp, final)
          break
        except OSError:
          if not final.exists():
            raise
      version += 1  # Another exporter took this version first.
    _fsync_dir(output_dir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  if keep is not None:
    for old in list_versions(output_dir)[:-keep]:
      shutil.rmtree(output_dir / str(old), ignore_errors=True)
  _log.info("Exported the policy (train step %d) to %s", train_step, final)
  return final


def restore_agent(logdir: str | os.PathLike, checkpoint: str | os.PathLike | None = None, env: str | None = None):
  """Rebuilds the agent of a training run and restores a checkpoint into it.

  Reads ``<logdir>/config.yaml`` and the environment name from ``<logdir>/run.json`` (or
  ``env``), builds the environment once for its specs, creates the agent in float32 (the
  checkpointed variables are float32 whatever the training precision) and restores
  ``checkpoint`` or the newest valid checkpoint in ``<logdir>/checkpoints``.

  Returns:
    ``(agent, config, env_name, checkpoint_path)``.

  Raises:
    UserError: a missing config, environment name or checkpoint.
  """
  from dreamer_tf.agent.dreamer_agent import DreamerAgent
  from dreamer_tf.config import load_saved_config
  from dreamer_tf.envs import env_tensor_specs
  from dreamer_tf.training.checkpointer import Checkpointer

  logdir = pathlib.Path(logdir)
  config_file = logdir / "config.yaml"
  if not config_file.is_file():
    raise UserError(f"{config_file} does not exist: pass the --logdir of a training run")
  config = load_saved_config(config_file)
  run_file = logdir / "run.json"
  if env is None and run_file.is_file():
    env = json.loads(run_file.read_text()).get("env")
  if not env:
    raise UserError(f"{logdir} has no run.json naming the environment: pass --env=NAME")
  time_step_spec, action_spec = env_tensor_specs(env, config)
  previous = tf.keras.mixed_precision.global_policy()
  tf.keras.mixed_precision.set_global_policy("float32")
  try:
    agent = DreamerAgent(time_step_spec, action_spec, config, seed=config.run.seed)
  finally:
    tf.keras.mixed_precision.set_global_policy(previous)
  checkpointer = Checkpointer(logdir / "checkpoints", agent=agent)
  path = checkpointer.restore(checkpoint)
  if path is None:
    raise UserError(f"{logdir / 'checkpoints'} holds no checkpoint yet: train first or pass --checkpoint=PATH")
  return agent, config, env, pathlib.Path(path)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
    prog="python -m dreamer_tf.export", description="Export a trained policy as a SavedModel for TF Serving."
  )
  parser.add_argument("--logdir", required=True, help="The training run directory.")
  parser.add_argument("--checkpoint", default=None, help="A ckpt-* directory (default: the newest valid one).")
  parser.add_argument(
    "--output", default=None, help="The model's base path; versions go below it (default saved_models/<env>)."
  )
  parser.add_argument("--env", default=None, help="Environment name, if the logdir has no run.json.")
  parser.add_argument("--keep", type=int, default=None, help="Keep only this many newest versions.")
  return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(argv)
  logging.basicConfig(level=logging.INFO, format="%(message)s")
  try:
    agent, config, env_name, ckpt = restore_agent(args.logdir, args.checkpoint, args.env)
    output = args.output or os.path.join("saved_models", env_name.replace("/", "_"))
    path = export_policy(agent, config, env_name, output, keep=args.keep)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  step = int(agent.train_step_counter.numpy())
  print(f"exported {ckpt} (train step {step}) to {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
