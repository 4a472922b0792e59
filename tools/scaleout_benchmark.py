"""Benchmarks the learner's throughput with 1 and 2 replicas and with local and Reverb replay.

  python tools/scaleout_benchmark.py --configs=xs --env=atari100k_pong --json=scaleout.json

Each combination of ``--replicas`` (1: the default strategy; N > 1: ``MirroredStrategy`` over N
logical CPU devices, ``run.logical_cpus=N``, or over the machine's GPUs when it has N) and
``--replays`` (``local``: the in-process :class:`SequenceReplayBuffer`; ``reverb``: a Reverb
server on 127.0.0.1 started by the learner, as ``--replay=reverb`` does) runs in its own
process, because the logical-device split is fixed when TensorFlow starts. Each process builds
the real :class:`~dreamer_tf.training.loop.Trainer` with its strategy, fills the replay with
``--fill`` steps of a uniformly random policy on the real environment (for Reverb through the
actors' :class:`ReverbStepObserver`), then measures, after warm-up, the median over
``--updates`` of:

* ``train/sec_per_update``: one ``Trainer.train_once`` (a global batch from the distributed
  replay dataset plus the distributed train step), and ``train/replayed_steps_per_sec``;
* ``sample/batches_per_sec``: the replay dataset alone (``batch_size x batch_length`` windows).

Reverb's rate limiter is opened wide once the fill is in (see :func:`measure`) so that it never
waits: this measures what the learner can consume, not the train ratio. The global batch is the
same in every process (``replay.batch_size``, split over the replicas).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _fill(trainer, env_name: str, config, steps: int) -> None:
  """Writes ``steps`` agent steps of a random policy into the trainer's replay (local or Reverb)."""
  from tf_agents.drivers import py_driver
  from tf_agents.policies import random_py_policy

  observer = trainer.observer
  if trainer.reverb is not None:
    from dreamer_tf.replay import reverb_replay as rr

    settings = trainer.reverb.settings
    observer = rr.ReverbStepObserver(
      trainer.reverb.address, rr.DATA_TABLE, settings.batch_length, settings.stride, config.run.envs,
      data_spec=trainer.replay.data_spec,
    )  # fmt: skip
  env = trainer.env
  policy = random_py_policy.RandomPyPolicy(env.time_step_spec(), env.action_spec(), outer_dims=(env.batch_size,))
  driver = py_driver.PyDriver(env, policy, observers=[observer], max_steps=steps)
  driver.run(env.reset())
  if trainer.reverb is not None:
    observer.flush()
    observer.close()


def _median_time(fn, warmup: int, repeats: int) -> tuple[float, list[float]]:
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times), times


def measure(env_name: str, presets: list, overrides: list, replicas: int, replay: str, updates: int, fill: int):
  """Runs one combination in this process; returns its figures."""
  from dreamer_tf import distribute
  from dreamer_tf.main import resolve_config

  # Reverb's limiter (see ReverbSettings) lets sampling start at train_start steps and then allows
  # samples_per_insert = train_ratio * stride / batch_length samples per item: starting at the fill
  # (less two windows, since the last steps do not complete an item) with a huge train ratio lets
  # every insert of the fill through and never makes the learner wait.
  batch_length = resolve_config(env_name, presets, overrides).replay.batch_length
  overrides = [
    *overrides,
    f"replay.backend={replay}",
    f"run.train_start={max(0, fill - 2 * batch_length)}",
    "run.train_ratio=1e9",
    "run.log_every_secs=1e9",
    "run.checkpoint_every_secs=1e9",
  ]
  import tensorflow as tf

  gpus = tf.config.list_physical_devices("GPU")
  devices = None
  if replicas > 1 and len(gpus) < replicas:
    overrides.append(f"run.logical_cpus={replicas}")
    distribute.split_cpu(replicas)
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:replicas]
  elif replicas > 1:
    devices = [d.name for d in tf.config.list_logical_devices("GPU")][:replicas]
  config = resolve_config(env_name, presets, overrides)
  strategy = distribute.make_strategy("mirrored", devices=devices) if replicas > 1 else tf.distribute.get_strategy()

  from dreamer_tf.training.loop import Trainer

  with tempfile.TemporaryDirectory() as logdir:
    trainer = Trainer(config, env_name, logdir, strategy=strategy)
    try:
      start = time.perf_counter()
      _fill(trainer, env_name, config, fill)
      fill_sec = time.perf_counter() - start
      start = time.perf_counter()
      trainer.train_once()
      first_call = time.perf_counter() - start
      sec, times = _median_time(trainer.train_once, warmup=1, repeats=updates)
      if trainer.reverb is not None:
        dataset = iter(trainer.reverb.dataset())
      else:
        dataset = iter(trainer.replay.as_dataset(trainer.batch_size, trainer.batch_length))
      sample_sec, _ = _median_time(lambda: next(dataset), warmup=3, repeats=max(20, updates))
    finally:
      trainer.close()
  replayed = config.replay.batch_size * config.replay.batch_length
  return {
    "replicas": strategy.num_replicas_in_sync,
    "replay": replay,
    "devices": devices or ["default"],
    "batch": f"{config.replay.batch_size}x{config.replay.batch_length}",
    "fill/steps": fill,
    "fill/sec": fill_sec,
    "train/first_call_sec": first_call,
    "train/sec_per_update": sec,
    "train/sec_per_update_all": times,
    "train/replayed_steps_per_sec": replayed / sec,
    "sample/batches_per_sec": 1.0 / sample_sec,
  }


def print_table(results: list[dict], baseline: dict) -> None:
  print(f"{'replicas':>8}  {'replay':<7} {'s/update':>9} {'replayed steps/s':>17} {'vs 1 local':>10} {'samples/s':>10}")
  for r in results:
    ratio = baseline["train/sec_per_update"] / r["train/sec_per_update"]
    print(
      f"{r['replicas']:>8}  {r['replay']:<7} {r['train/sec_per_update']:>9.3f} "
      f"{r['train/replayed_steps_per_sec']:>17.1f} {ratio:>9.2f}x {r['sample/batches_per_sec']:>10.1f}"
    )


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--env", default="atari100k_pong")
  parser.add_argument("--configs", default="xs", help="comma-separated presets")
  parser.add_argument("--override", action="append", default=[], help="dotted.key=value (repeatable)")
  parser.add_argument("--replicas", default="1,2", help="comma-separated replica counts")
  parser.add_argument("--replays", default="local,reverb", help="comma-separated: local, reverb")
  parser.add_argument("--updates", type=int, default=7, help="timed updates after warm-up")
  parser.add_argument("--fill", type=int, default=2000, help="random-policy steps written before timing")
  parser.add_argument("--json", default=None, help="write the results to this file")
  parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  presets = [p for p in args.configs.split(",") if p]
  if args.child:  # One combination, printed as JSON for the parent.
    (replicas,), (replay,) = [int(r) for r in args.replicas.split(",")], args.replays.split(",")
    result = measure(args.env, presets, args.override, replicas, replay, args.updates, args.fill)
    print("RESULT " + json.dumps(result))
    return result
  results = []
  for replicas, replay in itertools.product(
    [int(r) for r in args.replicas.split(",")], [r for r in args.replays.split(",") if r]
  ):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", f"--env={args.env}", f"--configs={args.configs}"]
    cmd += [f"--replicas={replicas}", f"--replays={replay}", f"--updates={args.updates}", f"--fill={args.fill}"]
    cmd += [f"--override={o}" for o in args.override]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
      sys.exit(f"scaleout_benchmark: {replicas} replicas with {replay} replay failed:\n{proc.stderr[-3000:]}")
    results.append(json.loads(lines[-1][len("RESULT ") :]))
    print(f"  done: {replicas} replica(s), {replay} replay", file=sys.stderr)
  baseline = next((r for r in results if r["replicas"] == 1 and r["replay"] == "local"), results[0])
  print(f"{args.env} --configs={args.configs} ({platform.machine()} {os.cpu_count()} cores)")
  print_table(results, baseline)
  report = {
    "env": args.env,
    "configs": args.configs,
    "overrides": args.override,
    "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}",
    "command": "python tools/scaleout_benchmark.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    "results": results,
  }
  if args.json:
    with open(args.json, "w") as f:
      json.dump(report, f, indent=2)
  return report


if __name__ == "__main__":
  main()
