"""One update under MirroredStrategy on 2 logical CPUs versus one single-device update.

Run as a script (the CPU must be split before TensorFlow starts): prints one ``RESULT {json}``
line with the largest weight differences. Argument: ``deterministic`` (which also checks the replay
context's write-back latents of one update, single-device against mirrored, under ``"context"``) or
``sampled``.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from dreamer_tf import distribute

distribute.split_cpu(2)

import distribute_helpers as h  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from dreamer_tf.errors import UserError  # noqa: E402


def main(mode):
  deterministic = mode == "deterministic"
  config = h.tiny_config(deterministic=deterministic)
  actions = 1 if deterministic else 3
  batch = h.make_batch(seed=1, actions=actions)

  single = h.build_agent(config, actions=actions, seed=5)
  strategy = distribute.make_strategy("mirrored")
  assert strategy.num_replicas_in_sync == 2, strategy.extended.worker_devices
  distribute.check_batch_divisible(h.BATCH, strategy)
  try:
    distribute.check_batch_divisible(3, strategy)
    indivisible_error = None
  except UserError as e:
    indivisible_error = str(e)
  with strategy.scope():
    mirrored = h.build_agent(config, actions=actions, seed=5)
  h.copy_state(single, mirrored)
  before = h.values(single)
  assert max(h.max_differences(before, h.values(mirrored)).values()) == 0.0

  single_fn = distribute.distributed_train_fn(tf.distribute.get_strategy(), single)
  single_info = single_fn(tf.nest.map_structure(tf.constant, batch))
  dataset = tf.data.Dataset.from_tensors(batch).repeat()
  mirrored_fn = distribute.distributed_train_fn(strategy, mirrored)
  try:
    distribute.distributed_train_fn(strategy, mirrored, jit_compile=True)
    jit_error = None
  except UserError as e:
    jit_error = str(e)
  mirrored_info = mirrored_fn(next(iter(distribute.distribute_dataset(strategy, dataset))))

  after_single, after_mirrored = h.values(single), h.values(mirrored)
  diffs = h.max_differences(after_single, after_mirrored, skip=("retnorm",))
  moved = h.max_differences(before, after_single)
  replicas_equal = all(
    all(np.array_equal(parts[0], p) for p in parts[1:])
    for parts in (h.replica_values(v) for v in h.state_variables(mirrored).values())
  )
  worst = max(diffs, key=diffs.get)
  h.emit(
    {
      "context": context(strategy) if deterministic else None,
      "replicas": strategy.num_replicas_in_sync,
      "indivisible_error": indivisible_error,
      "jit_error": jit_error,
      "max_diff": diffs[worst],
      "worst": worst,
      "moved_world_model": max(v for k, v in moved.items() if k.startswith("world_model")),
      "moved_critic": max(v for k, v in moved.items() if "critic" in k and "slow" not in k),
      "replicas_equal": replicas_equal,
      "updates": [int(single.train_step_counter.numpy()), int(mirrored.train_step_counter.numpy())],
      "model_loss": [float(single_info.extra["model_loss"]), float(mirrored_info.extra["model_loss"])],
      "model_grad_norm": [float(single_info.extra["model_grad_norm"]), float(mirrored_info.extra["model_grad_norm"])],
      "finite": bool(all(np.all(np.isfinite(v)) for v in after_mirrored.values())),
    }
  )


def context(strategy):
  """The replay context under 2 replicas: every row's written-back latent and id, in the global batch's order."""
  config = h.tiny_config(deterministic=True, **{"replay.context": 1})
  batch = h.make_batch(seed=2, length=h.LENGTH + 1)
  rng = np.random.default_rng(3)
  batch["latent"] = {
    "deter": rng.normal(size=(h.BATCH, h.LENGTH + 1, config.model.deter)).astype(np.float32),
    "stoch": np.ones((h.BATCH, h.LENGTH + 1, config.model.stoch, config.model.classes), np.float32),
  }
  batch["replay_id"] = np.arange(h.BATCH, dtype=np.int64) * 7 + 1
  single = h.build_agent(config, seed=5)
  with strategy.scope():
    mirrored = h.build_agent(config, seed=5)
  h.copy_state(single, mirrored)
  single_info = distribute.distributed_train_fn(tf.distribute.get_strategy(), single)(
    tf.nest.map_structure(tf.constant, batch)
  )
  dataset = distribute.distribute_dataset(strategy, tf.data.Dataset.from_tensors(batch).repeat())
  mirrored_info = distribute.distributed_train_fn(strategy, mirrored)(next(iter(dataset)))
  a, b = single_info.extra["replay"], mirrored_info.extra["replay"]
  return {
    "ids": [a["ids"].numpy().tolist(), b["ids"].numpy().tolist()],
    "shapes": [list(a["latent/deter"].shape), list(b["latent/deter"].shape)],
    "max_diff": max(float(np.abs(a[k].numpy() - b[k].numpy()).max()) for k in ("latent/deter", "latent/stoch")),
    "model_loss": [float(single_info.extra["model_loss"]), float(mirrored_info.extra["model_loss"])],
  }


if __name__ == "__main__":
  main(sys.argv[1] if len(sys.argv) > 1 else "deterministic")
