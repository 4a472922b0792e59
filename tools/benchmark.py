"""Benchmarks training throughput, acting speed, export latency, memory and env speed.

  python tools/benchmark.py --configs=s --env=atari100k_pong --json=bench.json
  python tools/benchmark.py --configs=s --configs=m --configs=nature,size12m --no_export --env_steps=0

With one ``--configs`` the benchmark runs in this process. Repeated, each ``--configs`` (presets of
either generation: ``nature,sizeNm`` selects the current one) runs in its own child process, one
after another, so that every row's peak memory and matmul figure are its own; a table compares
them and ``--json`` holds ``{"runs": [...]}`` with every row's figures.

Measures, after warm-up, the median over several updates of the batch
``batch_size x batch_length`` (16x64 by default) train step, replayed steps per second,
batched policy steps per second, exported-policy latency, peak memory (max RSS) and the
environment's steps per second, plus the update's analytic floating-point operations and
the achieved GFLOP/s next to a large float32 matmul timed in the same process (the
machine's practical limit). Prints a table and writes JSON with the keys
``train/sec_per_update``, ``train/replayed_steps_per_sec``, ``policy/steps_per_sec``,
``memory/peak_rss_mb`` and more.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np


def dense_flops(n_in: int, n_out: int) -> int:
  return 2 * n_in * n_out


def mlp_flops(n_in: int, n_out: int, layers: int, units: int) -> int:
  """FLOPs of ``layers`` hidden dense layers of ``units`` and an output layer of ``n_out``."""
  total, size = 0, n_in
  for _ in range(layers):
    total += dense_flops(size, units)
    size = units
  return total + dense_flops(size, n_out)


def split_obs_keys(model_config, obs_shapes: dict) -> tuple[list, list]:
  """The observation keys the CNN and the MLP encoders read (``model.cnn_keys`` / ``model.mlp_keys``)."""
  cnn = [k for k, s in obs_shapes.items() if len(s) == 3 and re.match(model_config.cnn_keys, k)]
  mlp = [k for k, s in obs_shapes.items() if len(s) in (0, 1) and re.match(model_config.mlp_keys, k)]
  return cnn, mlp


def update_flops(config, obs_shapes: dict, action_size: int, discrete: bool) -> dict:
  """Analytic multiply-add FLOPs (x2) of one train step, by component.

  Counts matmuls and convolutions (elementwise ops are ignored). Backward passes count
  twice their forward pass. Imagination runs ``imag_horizon`` steps from every one of the
  ``B x T`` posterior states; with REINFORCE (discrete actions) no gradient flows through it.
  The current generation (``model.core: blockgru``) is counted by :func:`nature_update_flops`.
  """
  if config.model.core == "blockgru":
    return nature_update_flops(config, obs_shapes, action_size, discrete)
  m = config.model
  batch = config.replay.batch_size * config.replay.batch_length
  flat = m.stoch * m.classes
  feat = m.deter + flat
  horizon = m.imag_horizon

  def mlp(n_in, n_out):
    return mlp_flops(n_in, n_out, m.layers, m.units)

  cnn_keys, mlp_keys = split_obs_keys(m, obs_shapes)
  enc = dec = embed = 0
  if cnn_keys:
    h, w = obs_shapes[cnn_keys[0]][:2]
    channels = sum(obs_shapes[k][-1] for k in cnn_keys)
    stages = int(math.log2(w) - math.log2(m.minres))
    size, c_in = h, channels
    for i in range(stages):
      c_out = m.cnn_depth * 2**i
      size //= 2
      enc += size * size * c_out * 16 * c_in * 2
      dec += size * size * c_out * 16 * (channels if i == 0 else c_out // 2) * 2  # transposed, mirrored
      c_in = c_out
    embed += size * size * c_in
    dec += dense_flops(feat, size * size * c_in)
  if mlp_keys:
    vector = sum(int(np.prod(obs_shapes[k])) if obs_shapes[k] else 1 for k in mlp_keys)
    enc += mlp(vector, m.units) - dense_flops(m.units, m.units)
    embed += m.units
    dec += mlp(feat, vector)
  img_step = (
    dense_flops(flat + action_size, m.units)
    + dense_flops(m.deter + m.units, 3 * m.deter)
    + dense_flops(m.deter, m.units)
    + dense_flops(m.units, flat)
  )
  obs_step = img_step + dense_flops(m.deter + embed, m.units) + dense_flops(m.units, flat)
  reward = mlp(feat, m.bins)
  cont = mlp(feat, 1)
  actor = mlp(feat, action_size) + (0 if discrete else dense_flops(m.units, action_size))
  critic = mlp(feat, m.bins)
  wm_fwd = batch * (enc + dec + obs_step + reward + cont)
  states = batch * (horizon + 1)
  imagine = batch * horizon * img_step + states * actor + states * (reward + cont)
  backprop = not discrete and m.actor_grad_cont == "backprop"
  actor_update = states * critic + batch * horizon * actor * 3
  if backprop:
    actor_update += 2 * (imagine + states * critic)
  critic_update = batch * horizon * (critic * 3 + critic)  # fast fwd+bwd, slow fwd
  parts = {
    "world_model": 3 * wm_fwd,
    "imagination": imagine,
    "actor": actor_update,
    "critic": critic_update,
  }
  parts["total"] = sum(parts.values())
  return parts


# The current generation's image CNNs (dreamerv3/rssm.py Encoder/Decoder, strided: False): channel
# multipliers of the stages and the kernel size, as networks.PoolingImageEncoder/UpsamplingImageDecoder.
NATURE_CNN_MULTS = (2, 3, 4, 4)
NATURE_CNN_KERNEL = 5


def _conv_flops(height: int, width: int, c_in: int, c_out: int, kernel: int) -> int:
  """A stride-1 'same' convolution over a ``height x width`` map."""
  return 2 * height * width * kernel * kernel * c_in * c_out


def nature_module_flops(config, obs_shapes: dict, action_size: int, discrete: bool) -> dict:
  """Forward FLOPs per row (per image for the CNNs) of each module of the current generation.

  ``enc``/``dec``: encoder and decoder of one observation (pooling CNN: stride-1 convolutions at
  each stage's input resolution, then 2x2 max-pooling; decoder: block spatial projection of
  ``deter``, ``stoch`` through ``2 x units``, nearest upsampling and stride-1 convolutions);
  ``core``: one BlockGRU step (three input layers to ``units``, ``dyn_layers`` block layers, the
  block gates); ``prior``/``post``: the dynamics predictor and the posterior; ``reward``,
  ``cont``, ``actor``, ``critic``: the heads on one feature vector. Only matmuls and convolutions
  count (norms, activations and pooling are left out); ``embed`` is the encoder's output size.
  """
  m = config.model
  flat = m.stoch * m.classes
  feat = m.deter + flat
  cnn_keys, mlp_keys = split_obs_keys(m, obs_shapes)
  enc = dec = embed = 0
  if cnn_keys:
    height, width = obs_shapes[cnn_keys[0]][:2]
    channels = sum(obs_shapes[k][-1] for k in cnn_keys)
    c_in = channels
    for mult in NATURE_CNN_MULTS:
      enc += _conv_flops(height, width, c_in, m.cnn_depth * mult, NATURE_CNN_KERNEL)
      height, width, c_in = height // 2, width // 2, m.cnn_depth * mult
    space = height * width * c_in
    embed += space
    dec += 2 * m.deter * space // m.bspace + dense_flops(flat, 2 * m.units) + dense_flops(2 * m.units, space)
    for mult in reversed(NATURE_CNN_MULTS[:-1]):
      height, width = 2 * height, 2 * width
      dec += _conv_flops(height, width, c_in, m.cnn_depth * mult, NATURE_CNN_KERNEL)
      c_in = m.cnn_depth * mult
    dec += _conv_flops(2 * height, 2 * width, c_in, channels, NATURE_CNN_KERNEL)
  if mlp_keys:
    vector = sum(int(np.prod(obs_shapes[k])) if obs_shapes[k] else 1 for k in mlp_keys)
    enc += mlp_flops(vector, m.vector_units, m.vector_layers, m.vector_units) - dense_flops(
      m.vector_units, m.vector_units
    )
    embed += m.vector_units
    dec += mlp_flops(feat, vector, m.vector_layers, m.vector_units)
  hidden = m.units
  core = dense_flops(m.deter, hidden) + dense_flops(flat, hidden) + dense_flops(action_size, hidden)
  width = m.deter + m.blocks * 3 * hidden
  for _ in range(m.dyn_layers):
    core += 2 * width * m.deter // m.blocks
    width = m.deter
  core += 2 * width * 3 * m.deter // m.blocks
  prior = mlp_flops(m.deter, flat, m.prior_layers, hidden)
  post = mlp_flops(m.deter + embed, flat, m.post_layers, hidden)
  head_layers = m.head_layers or m.layers
  actor = mlp_flops(feat, action_size, m.layers, m.units) + (0 if discrete else dense_flops(m.units, action_size))
  return {
    "enc": enc,
    "dec": dec,
    "embed": embed,
    "core": core,
    "prior": prior,
    "post": post,
    "reward": mlp_flops(feat, m.bins, head_layers, m.units),
    "cont": mlp_flops(feat, 1, head_layers, m.units),
    "actor": actor,
    "critic": mlp_flops(feat, m.bins, m.layers, m.units),
  }


def nature_update_flops(config, obs_shapes: dict, action_size: int, discrete: bool) -> dict:
  """Analytic FLOPs of one train step of the current generation (``model.core: blockgru``), by part.

  As :func:`update_flops`, for ``DreamerAgent._train_joint``: the world model filters every
  ``B x T`` step (BlockGRU, posterior, prior) and decodes it; imagination (on no tape) runs
  ``imag_horizon`` BlockGRU and prior steps and the actor from each of the ``B x T`` posterior
  states, then the reward and continue heads on the ``H + 1`` states; the critic runs forward and
  backward on the ``H + 1`` states and the slow critic forward on ``H``; the actor forward and
  backward on ``H`` (REINFORCE); the replay value loss runs the critic forward and backward and the
  slow critic forward on the ``B x T`` replayed states. Backward passes count twice their forward.
  """
  f = nature_module_flops(config, obs_shapes, action_size, discrete)
  batch = config.replay.batch_size * config.replay.batch_length
  horizon = config.model.imag_horizon
  wm_fwd = batch * (f["enc"] + f["dec"] + f["core"] + f["post"] + f["prior"] + f["reward"] + f["cont"])
  imagine = batch * horizon * (f["core"] + f["prior"] + f["actor"]) + batch * (horizon + 1) * (f["reward"] + f["cont"])
  parts = {
    "world_model": 3 * wm_fwd,
    "imagination": imagine,
    "actor": 3 * batch * horizon * f["actor"],
    "critic": 3 * batch * (horizon + 1) * f["critic"] + batch * horizon * f["critic"],
  }
  if config.model.loss_scales.repval:
    parts["replay_value"] = 4 * batch * f["critic"]
  parts["total"] = sum(parts.values())
  return parts


def matmul_gflops(n: int = 4096, repeats: int = 5) -> float:
  """Median GFLOP/s of an ``n x n x n`` float32 matmul: the machine's practical peak."""
  import tensorflow as tf

  a = tf.random.normal([n, n])
  b = tf.random.normal([n, n])
  fn = tf.function(lambda x, y: tf.reduce_sum(tf.matmul(x, y)))
  fn(a, b).numpy()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn(a, b).numpy()
    times.append(time.perf_counter() - start)
  return 2 * n**3 / statistics.median(times) / 1e9


def random_batch(spec, batch_size, batch_length, rng):
  """A replay-shaped batch of random data matching the replay spec."""
  import tensorflow as tf

  def make(s):
    shape = (batch_size, batch_length) + tuple(s.shape)
    if s.dtype == tf.uint8:
      return rng.integers(0, 255, shape, dtype=np.uint8)
    if s.dtype == tf.bool:
      return np.zeros(shape, bool)
    if s.dtype.is_integer:
      return np.zeros(shape, s.dtype.as_numpy_dtype)
    return rng.uniform(-1, 1, shape).astype(s.dtype.as_numpy_dtype)

  batch = tf.nest.map_structure(make, spec)
  batch["is_first"][:, 0] = True
  return batch


def peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def benchmark(env_name, presets, overrides, updates, policy_batch, policy_iters, export, env_steps, matmul):
  import tensorflow as tf
  from tf_agents.policies import py_tf_eager_policy
  from tf_agents.specs import tensor_spec
  from tf_agents.trajectories import time_step as ts

  from dreamer_tf.agent.dreamer_agent import DreamerAgent
  from dreamer_tf.envs import make_env
  from dreamer_tf.main import resolve_config
  from dreamer_tf.replay import replay_step_spec
  from dreamer_tf.training.precision import set_precision

  config = resolve_config(env_name, presets, overrides)
  precision = set_precision(config.run.precision, config.run.strategy)
  env = make_env(env_name, config, seed=0)
  time_step_spec = tensor_spec.from_spec(env.time_step_spec())
  action_spec = tensor_spec.from_spec(env.action_spec())
  agent = DreamerAgent(time_step_spec, action_spec, config)
  result = {
    "env": env_name,
    "configs": ",".join(presets),
    "precision": precision,
    "jit_compile": config.run.jit_compile,
    "batch": f"{config.replay.batch_size}x{config.replay.batch_length}",
    "params": agent.parameter_counts(),
    "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}, TF {tf.__version__}",
  }
  rng = np.random.default_rng(0)
  spec = replay_step_spec(config, env.observation_spec(), env.action_spec())
  # With the replay context (nature) a window is 1 + T steps with stored latents and ids (T steps trained).
  length = config.replay.batch_length + config.replay.context
  batch = random_batch(spec, config.replay.batch_size, length, rng)
  if config.replay.context:
    batch["replay_id"] = np.arange(config.replay.batch_size, dtype=np.int64)
  batch = tf.nest.map_structure(tf.convert_to_tensor, batch)
  train = tf.function(agent.train, jit_compile=config.run.jit_compile)
  start = time.perf_counter()
  train(batch).loss.numpy()
  result["train/first_call_sec"] = time.perf_counter() - start
  train(batch).loss.numpy()  # warm-up
  times = []
  for _ in range(updates):
    start = time.perf_counter()
    train(batch).loss.numpy()
    times.append(time.perf_counter() - start)
  sec = statistics.median(times)
  replayed = config.replay.batch_size * config.replay.batch_length
  result["train/sec_per_update"] = sec
  result["train/sec_per_update_all"] = times
  result["train/replayed_steps_per_sec"] = replayed / sec
  discrete = action_spec.dtype.is_integer
  obs_shapes = {k: tuple(s.shape) for k, s in env.observation_spec().items() if not k.startswith("log_")}
  flops = update_flops(config, obs_shapes, agent._action_size, discrete)
  result["train/gflop_per_update"] = flops["total"] / 1e9
  result["train/gflop_by_part"] = {k: v / 1e9 for k, v in flops.items()}
  result["train/gflops_achieved"] = flops["total"] / sec / 1e9

  # Batched acting with the collect policy.
  policy = py_tf_eager_policy.PyTFEagerPolicy(agent.collect_policy, use_tf_function=True, batch_time_steps=False)
  obs = {
    k: np.stack(
      [s.generate_value() if hasattr(s, "generate_value") else np.zeros(s.shape, s.dtype) for _ in range(policy_batch)]
    )
    for k, s in env.observation_spec().items()
  }
  step = ts.TimeStep(
    np.full(policy_batch, ts.StepType.MID, np.int32),
    np.zeros(policy_batch, np.float32),
    np.ones(policy_batch, np.float32),
    obs,
  )
  state = policy.get_initial_state(policy_batch)
  for _ in range(3):
    state = policy.action(step, state).state
  policy_times = []
  for _ in range(policy_iters):
    start = time.perf_counter()
    state = policy.action(step, state).state
    policy_times.append(time.perf_counter() - start)
  result["policy/batch"] = policy_batch
  result["policy/steps_per_sec"] = policy_batch / statistics.median(policy_times)

  if export:
    from dreamer_tf.export import export_policy

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import export_latency

    with tempfile.TemporaryDirectory() as tmp:
      path = export_policy(agent, config, env_name, os.path.join(tmp, "policy"))
      latency = export_latency.measure(str(path), iters=200, batch_iters=20)
    result.update({f"export/{k}": v for k, v in latency.items() if isinstance(v, (int, float))})
  env.close()
  if env_steps:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import env_speed

    result["env/steps_per_sec"] = env_speed.measure(env_name, env_steps)["steps_per_sec"]
  if matmul:
    peak = matmul_gflops()
    result["matmul/gflops"] = peak
    result["train/fraction_of_matmul_peak"] = result["train/gflops_achieved"] / peak
  result["memory/peak_rss_mb"] = peak_rss_mb()
  return result


def print_table(result):
  rows = [
    ("train step (median)", f"{result['train/sec_per_update']:.3f} s/update"),
    ("replayed steps/s", f"{result['train/replayed_steps_per_sec']:.1f}"),
    ("update FLOPs", f"{result['train/gflop_per_update']:.1f} GFLOP"),
    ("achieved", f"{result['train/gflops_achieved']:.1f} GFLOP/s"),
  ]
  if "matmul/gflops" in result:
    rows.append(
      (
        "4096^3 matmul",
        f"{result['matmul/gflops']:.1f} GFLOP/s "
        f"({100 * result['train/fraction_of_matmul_peak']:.0f}% reached by the update)",
      )
    )
  rows.append((f"policy (batch {result['policy/batch']})", f"{result['policy/steps_per_sec']:.1f} steps/s"))
  for key in ("export/batch1_p50_ms", "export/batch1_p99_ms", "export/batch64_steps_per_sec"):
    if key in result:
      rows.append((key, f"{result[key]:.2f}"))
  if "env/steps_per_sec" in result:
    rows.append(("env steps/s", f"{result['env/steps_per_sec']:.1f}"))
  rows.append(("peak RSS", f"{result['memory/peak_rss_mb']:.0f} MB"))
  width = max(len(r[0]) for r in rows)
  print(
    f"{result['env']} --configs={result['configs']} {result['precision']} batch {result['batch']} ({result['machine']})"
  )
  for name, value in rows:
    print(f"  {name.ljust(width)}  {value}")


def print_comparison(results):
  """One row per ``--configs`` group: seconds per update, share of the matmul figure, peak memory."""
  header = ("configs", "params", "s/update", "GFLOP/update", "GFLOP/s", "matmul GFLOP/s", "share", "peak RSS")
  header += ("1st call",)
  rows = [header]
  for r in results:
    share = r.get("train/fraction_of_matmul_peak")
    rows.append(
      (
        r["configs"],
        f"{sum(r['params'].values()) / 1e6:.1f}M",
        f"{r['train/sec_per_update']:.2f}",
        f"{r['train/gflop_per_update']:.0f}",
        f"{r['train/gflops_achieved']:.0f}",
        f"{r['matmul/gflops']:.0f}" if "matmul/gflops" in r else "-",
        f"{100 * share:.0f}%" if share is not None else "-",
        f"{r['memory/peak_rss_mb'] / 1024:.1f} GB",
        f"{r['train/first_call_sec']:.0f} s",
      )
    )
  widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
  for row in rows:
    print("  ".join(cell.rjust(width) if i else cell.ljust(width) for i, (cell, width) in enumerate(zip(row, widths))))


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--env", default="atari100k_pong")
  parser.add_argument(
    "--configs",
    action="append",
    default=None,
    help="comma-separated presets (default s); repeat to compare several, each in its own process",
  )
  parser.add_argument("--override", action="append", default=[], help="dotted.key=value (repeatable)")
  parser.add_argument("--precision", default=None, help="float32 | mixed_float16 | mixed_bfloat16")
  parser.add_argument("--jit_compile", action="store_true")
  parser.add_argument("--updates", type=int, default=5, help="timed updates after warm-up")
  parser.add_argument("--policy_batch", type=int, default=16)
  parser.add_argument("--policy_iters", type=int, default=50)
  parser.add_argument("--no_export", action="store_true")
  parser.add_argument("--env_steps", type=int, default=1000, help="0 skips the env speed")
  parser.add_argument("--no_matmul", action="store_true")
  parser.add_argument("--json", default=None, help="write the results to this file")
  args = parser.parse_args(argv)
  args.configs = args.configs or ["s"]
  if args.updates < 1:
    parser.error(f"--updates must be at least 1, got {args.updates}")
  for group in args.configs:
    if not [p for p in group.split(",") if p.strip()]:
      parser.error(f"--configs={group!r} names no preset")
  return args


def child_command(args: argparse.Namespace, configs: str, json_path: str) -> list:
  """The command line that benchmarks one ``--configs`` group in a child process."""
  cmd = [sys.executable, os.path.abspath(__file__), f"--env={args.env}", f"--configs={configs}"]
  cmd += [f"--override={o}" for o in args.override]
  if args.precision:
    cmd.append(f"--precision={args.precision}")
  if args.jit_compile:
    cmd.append("--jit_compile")
  cmd += [f"--updates={args.updates}", f"--policy_batch={args.policy_batch}", f"--policy_iters={args.policy_iters}"]
  cmd += [f"--env_steps={args.env_steps}", f"--json={json_path}"]
  cmd += ["--no_export"] * args.no_export + ["--no_matmul"] * args.no_matmul
  return cmd


def run_groups(args: argparse.Namespace) -> list:
  """Benchmarks every ``--configs`` group in its own child process, one after another."""
  results = []
  with tempfile.TemporaryDirectory() as tmp:
    for index, configs in enumerate(args.configs):
      path = os.path.join(tmp, f"{index}.json")
      print(f"--configs={configs}", flush=True)
      proc = subprocess.run(child_command(args, configs, path), capture_output=True, text=True)
      if proc.returncode != 0:
        sys.exit(f"benchmark: --configs={configs} failed:\n{proc.stderr[-3000:]}")
      print(proc.stdout, end="", flush=True)
      with open(path) as f:
        results.append(json.load(f))
  return results


def main(argv=None):
  args = parse_args(argv)
  command = "python tools/benchmark.py " + " ".join(argv if argv is not None else sys.argv[1:])
  if len(args.configs) > 1:
    results = run_groups(args)
    print()
    print_comparison(results)
    report = {"command": command, "runs": results}
    if args.json:
      with open(args.json, "w") as f:
        json.dump(report, f, indent=2)
    return report
  overrides = list(args.override)
  if args.precision:
    overrides.append(f"run.precision={args.precision}")
  if args.jit_compile:
    overrides.append("run.jit_compile=true")
  presets = [p.strip() for p in args.configs[0].split(",") if p.strip()]
  result = benchmark(
    args.env,
    presets,
    overrides,
    args.updates,
    args.policy_batch,
    args.policy_iters,
    not args.no_export,
    args.env_steps,
    not args.no_matmul,
  )
  result["command"] = command
  print_table(result)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=2)
  return result


if __name__ == "__main__":
  main()
