"""Action latency and throughput of exported policies, one per size preset.

Usage::

  python tools/export_latency.py --configs=xs,s,m --env=atari100k_pong --out=latency.json

For each preset an agent is built (random weights: speed does not depend on training), exported
with ``dreamer_tf.export.export_policy``, loaded back with ``tf.saved_model.load`` and its
``action`` signature timed: the p50/p99 latency of single calls at batch 1 and the throughput
(environment steps per second) at batch 64. Prints one JSON document (also written to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np


def _inputs(signature, metadata, batch: int, rng) -> dict:
  inputs = {}
  for key, spec in metadata["observation_spec"].items():
    shape = [batch, *spec["shape"]]
    if spec["dtype"] == "uint8":
      inputs[key] = rng.integers(0, 256, shape, dtype=np.uint8)
    else:
      inputs[key] = rng.normal(size=shape).astype(spec["dtype"])
  inputs["is_first"] = np.zeros([batch], bool)
  inputs["is_first"][0] = True
  return inputs


def measure(version_dir: str, iters: int, batch_iters: int, batch: int = 64, warmup: int = 5) -> dict:
  """Times the exported ``action`` signature of ``version_dir``."""
  import tensorflow as tf

  loaded = tf.saved_model.load(version_dir)
  action = loaded.signatures["action"]
  metadata = json.loads(loaded.signatures["get_metadata"](request=tf.constant(0))["metadata"].numpy())
  rng = np.random.default_rng(0)
  result = {}
  for size, count in ((1, iters), (batch, batch_iters)):
    state = {k: v for k, v in loaded.signatures["get_initial_state"](batch_size=tf.constant(size)).items()}
    inputs = {k: tf.constant(v) for k, v in _inputs(action, metadata, size, rng).items()}
    flags = dict(greedy=tf.constant(True), seed=tf.constant(-1, tf.int64))
    times = []
    for i in range(warmup + count):
      start = time.perf_counter()
      out = action(**inputs, **state, **flags)
      out["action"].numpy()
      if i >= warmup:
        times.append(time.perf_counter() - start)
      state = {k: out[k] for k in ("deter", "stoch", "prev_action")}
    times = np.asarray(times)
    if size == 1:
      result["batch1_p50_ms"] = float(np.percentile(times, 50) * 1e3)
      result["batch1_p99_ms"] = float(np.percentile(times, 99) * 1e3)
      result["batch1_calls"] = count
    else:
      result[f"batch{size}_steps_per_sec"] = float(size * count / times.sum())
      result[f"batch{size}_p50_ms"] = float(np.percentile(times, 50) * 1e3)
      result[f"batch{size}_calls"] = count
  return result


def benchmark(presets, env_name: str, iters: int, batch_iters: int, batch: int = 64) -> dict:
  import tensorflow as tf

  from dreamer_tf import export
  from dreamer_tf.agent.dreamer_agent import DreamerAgent
  from dreamer_tf.config import load_config
  from dreamer_tf.envs import env_tensor_specs

  results = {
    "env": env_name,
    "tensorflow": tf.__version__,
    "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {len(tf.config.list_physical_devices('GPU'))} GPUs",
    "presets": {},
  }
  for preset in presets:
    config = load_config(env_name, [preset])
    time_step_spec, action_spec = env_tensor_specs(env_name, config)
    agent = DreamerAgent(time_step_spec, action_spec, config, seed=0)
    counts = agent.parameter_counts()
    with tempfile.TemporaryDirectory() as tmp:
      start = time.perf_counter()
      path = export.export_policy(agent, config, env_name, os.path.join(tmp, preset))
      export_secs = time.perf_counter() - start
      entry = measure(str(path), iters, batch_iters, batch)
    entry.update(export_secs=export_secs, parameters=counts["world_model"] + counts["actor"])
    results["presets"][preset] = entry
    print(f"{preset}: {json.dumps(entry)}", file=sys.stderr)
  return results


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--configs", default="xs,s", help="Comma-separated size presets (debug, xs, s, m, l, xl).")
  parser.add_argument("--env", default="atari100k_pong", help="Environment whose specs the policies take.")
  parser.add_argument("--iters", type=int, default=200, help="Timed batch-1 calls per preset.")
  parser.add_argument("--batch_iters", type=int, default=20, help="Timed batch-64 calls per preset.")
  parser.add_argument("--batch", type=int, default=64, help="Batch size of the throughput measurement.")
  parser.add_argument("--out", default=None, help="Also write the JSON here.")
  return parser.parse_args(argv)


def main(argv=None) -> dict:
  args = parse_args(argv)
  presets = [p.strip() for p in args.configs.split(",") if p.strip()]
  results = benchmark(presets, args.env, args.iters, args.batch_iters, args.batch)
  text = json.dumps(results, indent=1)
  print(text)
  if args.out:
    with open(args.out, "w") as f:
      f.write(text + "\n")
  return results


if __name__ == "__main__":
  main()
