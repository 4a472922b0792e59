"""CPU seconds (all threads) and wall seconds per learner update, through the real Trainer.

  PYTHONPATH=<checkout> python tools/learner_step_cpu.py [--configs=s] [--env=atari100k_pong]

Builds :class:`~dreamer_tf.training.loop.Trainer` (so it measures ``Trainer.train_once``: the
replay dataset, the distributed train step and the learner's bookkeeping), fills replay with
1,500 random steps, runs 2 warm-up updates, then prints one JSON line with the median CPU
seconds (``time.process_time``: every thread of the process) and wall seconds of ``--updates``
updates. CPU seconds vary far less than wall seconds on a shared machine, so two commits can
be compared run against run (alternate them: base, head, base, head, ...). It uses only what
every commit since the Trainer's first version has (``train_once``, ``observer``, ``env``),
so it can measure a checkout older than itself.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--env", default="atari100k_pong")
  parser.add_argument("--configs", default="s", help="comma-separated presets")
  parser.add_argument("--updates", type=int, default=7, help="timed updates after 2 warm-up updates")
  args = parser.parse_args()
  import scaleout_benchmark

  from dreamer_tf.main import resolve_config
  from dreamer_tf.training.loop import Trainer

  quiet = ["run.log_every_secs=100000", "run.checkpoint_every_secs=100000"]
  config = resolve_config(args.env, args.configs.split(","), quiet)
  with tempfile.TemporaryDirectory() as logdir:
    trainer = Trainer(config, args.env, logdir)
    try:
      scaleout_benchmark._fill(trainer, args.env, config, 1500)
      trainer.train_once()
      trainer.train_once()
      cpu, wall = [], []
      for _ in range(args.updates):
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        trainer.train_once()
        cpu.append(time.process_time() - cpu_start)
        wall.append(time.perf_counter() - wall_start)
    finally:
      trainer.close()
  print(
    json.dumps({"cpu_median": statistics.median(cpu), "wall_median": statistics.median(wall), "cpu": cpu, "wall": wall})
  )


if __name__ == "__main__":
  main()
