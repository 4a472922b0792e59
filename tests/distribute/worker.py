"""One worker of a 2-process MultiWorkerMirroredStrategy run (TF_CONFIG on 127.0.0.1).

Usage: ``python worker.py CHECKPOINT_DIR``. Trains 2 updates on this worker's own data,
checkpoints through DistributedCheckpointer (the chief writes), trains one more update,
restores the checkpoint, repeats that update, and prints ``RESULT {json}`` with weight digests.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from dreamer_tf import distribute

strategy = distribute.make_strategy("multi_worker")  # Before any other TensorFlow op.

import pathlib  # noqa: E402

import distribute_helpers as h  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def main(checkpoint_dir):
  task_type, index, workers = distribute.tf_config_task()
  distribute.check_batch_divisible(h.BATCH, strategy)
  config = h.tiny_config()
  with strategy.scope():
    agent = h.build_agent(config, seed=5)
  # Each worker trains on its own data: identical weights afterwards show the all-reduce.
  # The worker's replica takes consecutive half-batch slices of the global batches (auto-sharding
  # is off), so both halves are the same rows: every update of this worker sees the same data.
  half = h.make_batch(seed=100 + index, batch=h.BATCH // 2)
  batch = tf.nest.map_structure(lambda x: np.concatenate([x, x]), half)
  dataset = tf.data.Dataset.from_tensors(batch).repeat()
  batches = iter(distribute.distribute_dataset(strategy, dataset))
  train_fn = distribute.distributed_train_fn(strategy, agent)
  checkpointer = distribute.DistributedCheckpointer(strategy, checkpoint_dir, keep=2, agent=agent)
  digests = {"init": h.digest(agent)}
  for _ in range(2):
    info = train_fn(next(batches))
  digests["trained"] = h.digest(agent)
  saved = checkpointer.save(int(agent.train_step_counter.numpy()))
  train_fn(next(batches))
  digests["continued"] = h.digest(agent)
  restored = checkpointer.restore()
  digests["restored"] = h.digest(agent)
  step_after_restore = int(agent.train_step_counter.numpy())
  train_fn(next(batches))
  digests["resumed"] = h.digest(agent)
  agreed = [distribute.any_worker(strategy, index == 1), distribute.any_worker(strategy, False)]
  h.emit(
    {
      "agreed": agreed,
      "task": [task_type, index, workers],
      "chief": distribute.is_chief(strategy),
      "replicas": strategy.num_replicas_in_sync,
      "saved": None if saved is None else pathlib.Path(saved).name,
      "restored": pathlib.Path(restored).name,
      "step_after_restore": step_after_restore,
      "model_loss": float(info.extra["model_loss"]),
      "digests": digests,
    }
  )


if __name__ == "__main__":
  main(sys.argv[1])
