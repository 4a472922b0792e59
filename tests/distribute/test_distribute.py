"""Tests of dreamer_tf/distribute.py: strategies, the distributed train step, multi-worker
checkpoints and the TPU input path (compiled with XLA on CPU).

The mirrored and multi-worker checks run in subprocesses: the CPU must be split into logical
devices, or the collective ops configured, before TensorFlow starts.
"""

import json
import os
import pathlib
import subprocess
import sys

import distribute_helpers as h
import numpy as np
import portpicker
import pytest
import tensorflow as tf

from dreamer_tf import distribute
from dreamer_tf.errors import UserError

HERE = pathlib.Path(__file__).resolve().parent
TIMEOUT_S = 600


def _env(**extra):
  env = {k: v for k, v in os.environ.items() if k not in ("TF_CONFIG", "CUDA_VISIBLE_DEVICES")}
  env.update(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", **extra)
  return env


def _result(stdout, stderr, what):
  lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
  assert lines, f"{what} printed no result:\n{stdout[-2000:]}\n{stderr[-4000:]}"
  return json.loads(lines[-1][len("RESULT ") :])


def _run_script(*args, **env):
  proc = subprocess.run(
    [sys.executable, *map(str, args)], cwd=HERE, env=_env(**env), capture_output=True, text=True, timeout=TIMEOUT_S
  )
  assert proc.returncode == 0, f"{args[0]} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
  return _result(proc.stdout, proc.stderr, args[0])


# Strategy creation and checks (in process, no devices changed).


def test_default_strategy_is_the_current_one():
  strategy = distribute.make_strategy("default")
  assert strategy is tf.distribute.get_strategy()
  assert distribute.strategy_name(strategy) == "default"
  assert distribute.check_batch_divisible(16, strategy) == 16
  assert distribute.is_chief(strategy)


def test_unknown_strategy_is_a_user_error():
  with pytest.raises(UserError, match="unknown strategy 'gpus'"):
    distribute.make_strategy("gpus")


def test_split_cpu_needs_a_positive_count():
  with pytest.raises(UserError, match="at least 1"):
    distribute.split_cpu(0)


@pytest.mark.parametrize(
  "tf_config, message",
  [
    (None, "needs the TF_CONFIG environment variable"),
    ("{not json", "not a valid multi-worker configuration"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}}', "not a valid multi-worker configuration"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}', "not a valid"),
  ],
)
def test_multi_worker_needs_a_valid_tf_config(monkeypatch, tf_config, message):
  if tf_config is None:
    monkeypatch.delenv("TF_CONFIG", raising=False)
  else:
    monkeypatch.setenv("TF_CONFIG", tf_config)
  with pytest.raises(UserError, match=message) as error:
    distribute.make_strategy("multi_worker")
  assert "\n" not in str(error.value)


def test_tf_config_task():
  config = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 1}}
  os.environ["TF_CONFIG"] = json.dumps(config)
  try:
    assert distribute.tf_config_task() == ("worker", 1, 2)
  finally:
    del os.environ["TF_CONFIG"]


# The TPU input path, compiled with XLA on CPU.


def test_device_batch_keeps_values_and_uses_accelerator_dtypes():
  batch = tf.nest.map_structure(tf.constant, h.make_batch(seed=0, actions=3))
  cast = distribute.device_batch(batch)
  assert cast["obs"]["image"].dtype == tf.bfloat16
  assert cast["is_first"].dtype == cast["is_terminal"].dtype == tf.float32
  assert cast["action"].dtype == tf.int32 and cast["reward"].dtype == tf.float32
  flat, flat_cast = tf.nest.flatten(batch), tf.nest.flatten(cast)
  for a, b in zip(flat, flat_cast):
    np.testing.assert_array_equal(tf.cast(a, tf.float32).numpy(), tf.cast(b, tf.float32).numpy())


def test_tpu_path_compiles_with_xla_on_cpu():
  """The train step and the policy step compile with jit_compile=True on cast batches."""
  config = h.tiny_config(deterministic=False)
  agent = h.build_agent(config, actions=3, seed=2)
  batch = tf.nest.map_structure(tf.constant, h.make_batch(seed=3, actions=3))
  cast = distribute.device_batch(batch)
  # The cast batch gives the world model the same inputs (same loss for the same seed).
  seed = tf.constant([4, 5], tf.int64)
  loss = agent.world_model.loss(agent.preprocess(batch), seed)[0]
  loss_cast = agent.world_model.loss(agent.preprocess(cast), seed)[0]
  np.testing.assert_allclose(loss.numpy(), loss_cast.numpy(), rtol=1e-6)

  train_fn = distribute.distributed_train_fn(tf.distribute.get_strategy(), agent, jit_compile=True)
  info = train_fn(cast)
  assert agent.train_step_counter.numpy() == 1
  assert np.isfinite(info.loss.numpy()) and all(np.isfinite(v.numpy()) for v in info.extra.values())

  policy = agent.collect_policy
  step = tf.function(lambda obs, first, state, seed: policy.step(obs, first, state, seed, False), jit_compile=True)
  obs = {"image": cast["obs"]["image"][:, 0], "vector": cast["obs"]["vector"][:, 0]}
  state = policy.get_initial_state(h.BATCH)
  action, state = step(obs, tf.ones([h.BATCH], tf.bool), state, seed)
  action, state = step(obs, tf.zeros([h.BATCH], tf.bool), state, seed + 1)
  assert action.shape == (h.BATCH,) and action.dtype == tf.int32
  assert set(action.numpy().tolist()) <= {0, 1, 2}
  assert all(np.all(np.isfinite(v.numpy())) for v in state.values())


# XLA_FLAGS under run.jit_compile (issue 19).


@pytest.mark.parametrize(
  "flags, kept, replaced",
  [
    (
      "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
      "--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads=1",  # Still "--" first: not a file name.
      True,
    ),
    (
      "--xla_dump_to=/tmp/x --xla_cpu_multi_thread_eigen=0",
      "--xla_dump_to=/tmp/x --xla_cpu_multi_thread_eigen=true",
      True,
    ),
    ("--xla_cpu_multi_thread_eigen=true", "--xla_cpu_multi_thread_eigen=true", False),
    (None, None, False),
  ],
)
def test_the_single_threaded_eigen_flag_is_replaced_and_every_other_flag_kept(flags, kept, replaced):
  environ = {} if flags is None else {"XLA_FLAGS": flags}
  assert (distribute.undo_single_threaded_eigen(environ) is not None) == replaced
  assert environ.get("XLA_FLAGS") == kept


def test_a_jit_compiled_twohot_head_keeps_identical_bins_identical_under_single_threaded_eigen():
  """With XLA_FLAGS=--xla_cpu_multi_thread_eigen=false (the JAX recipe for one CPU thread), TensorFlow 2.15's
  XLA rounded the last 255 % 16 = 15 output columns of a matmul differently: a symexp twohot head's identical
  far bins got different logits and its prediction moved by 0.5 rms against plain TensorFlow (the return
  scale of docs/parity.md section f). distributed_train_fn sets it to true before XLA reads it."""
  flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"  # tools/parity.py's, for JAX
  result = _run_script(HERE / "xla_twohot_check.py", XLA_FLAGS=flags)
  assert result["unequal_far_bins"] == []
  assert result["rms_difference"] < 0.15  # The mirrored pairs' fused multiply-adds leave about 0.06.


# Mirrored and multi-worker runs (subprocesses).


@pytest.fixture(scope="module")
def mirrored_deterministic():
  return _run_script("mirrored_check.py", "deterministic")


def test_mirrored_update_equals_single_device_update(mirrored_deterministic):
  """One update on 2 logical CPUs gives the single-device weights for the same global batch."""
  result = mirrored_deterministic
  assert result["replicas"] == 2
  assert result["moved_world_model"] > 1e-5 and result["moved_critic"] > 1e-5, result
  assert result["max_diff"] < 1e-5, result
  assert result["replicas_equal"] and result["finite"], result
  assert result["updates"] == [1, 1], result
  np.testing.assert_allclose(*result["model_loss"], rtol=1e-5)
  np.testing.assert_allclose(*result["model_grad_norm"], rtol=1e-5)
  assert result["indivisible_error"].startswith("replay.batch_size=3 is not divisible by the 2 replicas")
  assert "--jit_compile works with --strategy=mirrored on GPUs only" in result["jit_error"]


def test_mirrored_update_writes_back_every_rows_latent_with_its_id(mirrored_deterministic):
  """replay.context=1 on 2 logical CPUs: the write-back holds the global batch's rows in order, as on one device."""
  result = mirrored_deterministic["context"]
  assert result["ids"][0] == result["ids"][1] == [1, 8, 15, 22], result
  assert result["shapes"][0] == result["shapes"][1] == [4, 6, 16], result
  assert result["max_diff"] < 1e-5, result
  np.testing.assert_allclose(*result["model_loss"], rtol=1e-5)


@pytest.mark.slow
def test_two_workers_train_identically_checkpoint_once_and_resume(tmp_path):
  ports = [portpicker.pick_unused_port() for _ in range(2)]
  workers = [f"127.0.0.1:{port}" for port in ports]
  checkpoints = tmp_path / "checkpoints"
  procs, tmpdirs = [], []
  try:
    for index in range(2):
      tmpdir = tmp_path / f"tmp{index}"
      tmpdir.mkdir()
      tmpdirs.append(tmpdir)
      tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
      procs.append(
        subprocess.Popen(
          [sys.executable, "worker.py", str(checkpoints)],
          cwd=HERE,
          env=_env(TF_CONFIG=tf_config, TMPDIR=str(tmpdir)),
          stdout=subprocess.PIPE,
          stderr=subprocess.PIPE,
          text=True,
        )
      )
    outputs = [proc.communicate(timeout=TIMEOUT_S) for proc in procs]
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  for proc, (out, err) in zip(procs, outputs):
    assert proc.returncode == 0, f"worker failed:\n{out[-2000:]}\n{err[-4000:]}"
  chief, other = (_result(out, err, "worker") for out, err in outputs)
  assert chief["chief"] and not other["chief"]
  assert chief["agreed"] == other["agreed"] == [True, False]  # A flag raised on worker 1 reaches both.
  assert chief["replicas"] == other["replicas"] == 2
  # Different data on each worker, identical weights at every point: the gradients are all-reduced.
  assert chief["digests"] == other["digests"]
  digests = chief["digests"]
  assert digests["trained"] != digests["init"] and digests["continued"] != digests["trained"]
  # Written once, by the chief; every worker restored it and resumed identically.
  assert chief["saved"] == "ckpt-000000000002" and other["saved"] is None
  assert chief["restored"] == other["restored"] == "ckpt-000000000002"
  assert sorted(p.name for p in checkpoints.iterdir()) == ["ckpt-000000000002"]
  assert chief["step_after_restore"] == 2
  assert digests["restored"] == digests["trained"]
  assert digests["resumed"] == digests["continued"]
  # The non-chief's scratch checkpoint was deleted.
  assert [list(d.iterdir()) for d in tmpdirs] == [[], []]
