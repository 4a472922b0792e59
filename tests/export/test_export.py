"""Tests for dreamer_tf/export.py: layout, signatures, TF-only loading, equivalence, validation.

The tests that use the session fixtures run for both generations (conftest.py); those that do not
depend on the generation run for the 2023 one only (``ONLY_2023``).
"""

import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import tensorflow as tf
from export_helpers import ENV, REPO, SAVED_MODEL_CLI, TRAIN_STEP, build_agent, debug_config, run_tf_only

from dreamer_tf import export
from dreamer_tf.config import generation as config_generation
from dreamer_tf.config import load_saved_config
from dreamer_tf.envs import make_env
from dreamer_tf.errors import UserError

STEPS = 100
ONLY_2023 = pytest.mark.parametrize("generation", ["2023"], indirect=True)


def _cli(*args, cwd=REPO):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.run(
    [sys.executable, "-m", "dreamer_tf.export", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240
  )


def _metadata(version_dir):
  return json.loads((version_dir / export.METADATA_FILE).read_text())


@ONLY_2023
def test_cli_exports_new_versions_from_a_logdir(logdir, tmp_path):
  output = tmp_path / "saved_models" / "pong"
  (output / "notes").mkdir(parents=True)  # Not a version: ignored.
  assert export.main([f"--logdir={logdir}", f"--output={output}"]) == 0
  assert export.main([f"--logdir={logdir}", f"--output={output}"]) == 0
  assert export.list_versions(output) == [1, 2]
  result = _cli(f"--logdir={logdir}", f"--output={output}", "--keep=2")
  assert result.returncode == 0, result.stderr
  assert "(train step 123)" in result.stdout and str(output / "3") in result.stdout
  assert export.list_versions(output) == [2, 3]
  assert sorted(p.name for p in output.iterdir()) == ["2", "3", "notes"]  # No temporary leftovers.
  meta = _metadata(output / "3")
  assert meta["env_name"] == ENV and meta["train_step"] == TRAIN_STEP and meta["generation"] == "2023"


def test_cli_errors_are_one_line(tmp_path):
  result = _cli(f"--logdir={tmp_path}", f"--output={tmp_path / 'out'}")
  assert result.returncode == 2
  assert "Traceback" not in result.stderr
  assert result.stderr.strip().splitlines()[-1] == (
    f"error: {tmp_path / 'config.yaml'} does not exist: pass the --logdir of a training run"
  )
  (tmp_path / "config.yaml").write_text(debug_config().to_yaml())
  with pytest.raises(UserError, match="pass --env=NAME"):
    export.restore_agent(tmp_path)
  with pytest.raises(UserError, match="holds no checkpoint"):
    export.restore_agent(tmp_path, env=ENV)


def test_the_run_records_its_generation(logdir, generation):
  """run.json names the generation beside the environment; config.yaml holds the switches it follows from."""
  assert json.loads((logdir / "run.json").read_text()) == {"env": ENV, "generation": generation}
  config = load_saved_config(logdir / "config.yaml")
  assert config_generation(config) == generation
  layers = {"2023": ("gru", "layer", "strided"), "nature": ("blockgru", "rms", "pooling")}[generation]
  assert (config.model.core, config.model.norm, config.model.cnn) == layers


@pytest.mark.parametrize("target, source", [("nature", "2023"), ("2023", "nature")])
def test_restoring_a_checkpoint_of_the_other_generation_is_one_line(logdirs, target, source, tmp_path, capsys):
  """``--checkpoint`` of a run of the other generation stops with the checkpointer's one-line error."""
  checkpoint = logdirs(source) / "checkpoints" / "ckpt-000000001000"
  output = tmp_path / "out"
  assert export.main([f"--logdir={logdirs(target)}", f"--checkpoint={checkpoint}", f"--output={output}"]) == 2
  err = capsys.readouterr().err
  assert "Traceback" not in err
  line = err.strip().splitlines()[-1]
  assert line.startswith(f"error: Checkpoint {checkpoint} does not match the model (")
  assert line.endswith("): it was written with a different configuration; use a new logdir or the same configuration")
  assert not output.exists()


def test_restore_reads_the_checkpoint(restored, generation):
  agent, config, env_name, checkpoint = restored
  assert env_name == ENV and checkpoint.name == "ckpt-000000001000"
  assert config_generation(config) == generation
  assert int(agent.train_step_counter.numpy()) == TRAIN_STEP
  fresh = build_agent(config)  # Same seed, but without the checkpoint's perturbation.
  assert not np.allclose(fresh.world_model.rssm.variables[0].numpy(), agent.world_model.rssm.variables[0].numpy())


@ONLY_2023
def test_versions_increase_atomically_and_old_ones_are_pruned(restored, tmp_path):
  agent, config, env_name, _ = restored
  base = tmp_path / "m"
  (base / "7").mkdir(parents=True)  # An existing version (e.g. from another run).
  first = export.export_policy(agent, config, env_name, base, train_step=5)
  second = export.export_policy(agent, config, env_name, base, train_step=6, keep=2)
  assert (first.name, second.name) == ("8", "9")
  assert export.list_versions(base) == [8, 9]
  assert sorted(os.listdir(base)) == ["8", "9"]
  assert _metadata(second)["train_step"] == 6
  assert (second / "saved_model.pb").is_file() and (second / "variables").is_dir()


def test_saved_model_cli_show_has_readable_signatures(version_dir):
  result = subprocess.run(
    [SAVED_MODEL_CLI, "show", "--all", "--dir", str(version_dir)], capture_output=True, text=True, timeout=120
  )
  assert result.returncode == 0, result.stderr
  text = result.stdout
  for name in ("serving_default", "action", "get_initial_state", "get_metadata"):
    assert f"signature_def['{name}']" in text
  action = text.split("signature_def['action']")[1].split("signature_def[")[0]
  for line in (
    "inputs['image'] tensor_info:\n        dtype: DT_UINT8\n        shape: (-1, 64, 64, 3)",
    "inputs['is_first'] tensor_info:\n        dtype: DT_BOOL\n        shape: (-1)",
    "inputs['deter'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1, 32)",
    "inputs['stoch'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1, 4, 4)",
    "inputs['prev_action'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1, 6)",
    "inputs['greedy'] tensor_info:\n        dtype: DT_BOOL\n        shape: ()",
    "inputs['seed'] tensor_info:\n        dtype: DT_INT64\n        shape: ()",
    "outputs['action'] tensor_info:\n        dtype: DT_INT32\n        shape: (-1)",
    "outputs['deter'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1, 32)",
    "Method name is: tensorflow/serving/predict",
  ):
    assert line in action, line
  assert "0/observation" not in text and "time_step" not in text
  initial_state = text.split("signature_def['get_initial_state']")[1].split("signature_def[")[0]
  assert "inputs['batch_size'] tensor_info:\n        dtype: DT_INT32\n        shape: ()" in initial_state


def test_saved_model_cli_run(version_dir, tmp_path):
  np.save(tmp_path / "image.npy", np.zeros([1, 64, 64, 3], np.uint8))
  zeros = lambda *shape: str(np.zeros(shape).tolist())
  exprs = f"is_first=[True];deter={zeros(1, 32)};stoch={zeros(1, 4, 4)};prev_action={zeros(1, 6)};greedy=True;seed=3"
  outdir = tmp_path / "run"
  base = [SAVED_MODEL_CLI, "run", "--dir", str(version_dir), "--tag_set", "serve"]
  args = ["--signature_def", "action", "--inputs", f"image={tmp_path / 'image.npy'}", "--input_exprs", exprs]
  result = subprocess.run([*base, *args, "--outdir", str(outdir)], capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  assert np.load(outdir / "action.npy").shape == (1,)
  assert np.load(outdir / "deter.npy").shape == (1, 32)
  args = ["--signature_def", "get_metadata", "--input_exprs", "request=0"]
  result = subprocess.run([*base, *args], capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "atari100k_pong" in result.stdout


def _in_process_rollout(agent, config, steps):
  """Greedy in-process DreamerPolicy.step on a real environment, seed ``t`` at step ``t``."""
  step_fn = tf.function(
    lambda obs, first, state, seed: agent.policy.step(obs, first, state, export.seed_pair(seed), True)
  )
  env = make_env(ENV, config, seed=3)
  record = {k: [] for k in ("image", "is_first", "action", "deter", "stoch", "prev_action")}
  state = tf.nest.map_structure(tf.zeros_like, agent.policy.get_initial_state(1))
  time_step = env.reset()
  for t in range(steps):
    image = np.asarray(time_step.observation["image"])[None]
    first = np.array([time_step.is_first()])
    action, state = step_fn({"image": tf.constant(image)}, tf.constant(first), state, tf.constant(t, tf.int64))
    record["image"].append(image[0])
    record["is_first"].append(first[0])
    record["action"].append(action.numpy()[0])
    for key in export.STATE_KEYS:
      record[key].append(state[key].numpy()[0])
    time_step = env.step(action.numpy()[0])
  env.close()
  return {k: np.stack(v) for k, v in record.items()}


# Loads the export twice in a TensorFlow-only process (tf.saved_model.load, then the TF1 loader
# with the 'serve' tag that TF Serving uses) and replays the recorded observations through each.
FRESH_SCRIPT = """
import json, sys
import numpy as np
for name in ("tensorflow_probability", "tf_agents", "dreamer_tf"):
  try:
    __import__(name)
  except ImportError:
    pass
  else:
    raise SystemExit(f"{name} is importable")
import tensorflow as tf
model_dir, data_file, out_file, generation = sys.argv[1:5]
data = np.load(data_file)
keys = ("action", "deter", "stoch", "prev_action")

loaded = tf.saved_model.load(model_dir)
meta = json.loads(loaded.signatures["get_metadata"](request=tf.constant(0))["metadata"].numpy())
assert meta["env_name"] == "atari100k_pong" and meta["train_step"] == 123 and meta["generation"] == generation, meta
action = loaded.signatures["action"]
state = loaded.signatures["get_initial_state"](batch_size=tf.constant(1))
tf2 = {k: [] for k in keys}
for t in range(len(data["action"])):
  out = action(image=data["image"][t:t+1], is_first=data["is_first"][t:t+1], greedy=tf.constant(True),
               seed=tf.constant(t, tf.int64), **state)
  state = {k: out[k] for k in keys[1:]}
  for k in keys:
    tf2[k].append(out[k].numpy()[0])

graph = tf.Graph()
tf1 = {k: [] for k in keys}
with tf.compat.v1.Session(graph=graph) as sess:
  meta_graph = tf.compat.v1.saved_model.loader.load(sess, ["serve"], model_dir)
  sig = meta_graph.signature_def["action"]
  init = meta_graph.signature_def["get_initial_state"]
  tensor = lambda info: graph.get_tensor_by_name(info.name)
  state = sess.run({k: tensor(v) for k, v in init.outputs.items()}, {tensor(init.inputs["batch_size"]): 1})
  fetches = {k: tensor(v) for k, v in sig.outputs.items()}
  for t in range(len(data["action"])):
    feed = {"image": data["image"][t:t+1], "is_first": data["is_first"][t:t+1], "greedy": True, "seed": t, **state}
    out = sess.run(fetches, {tensor(sig.inputs[k]): v for k, v in feed.items()})
    state = {k: out[k] for k in keys[1:]}
    for k in keys:
      tf1[k].append(out[k][0])
assert not any(m.split(".")[0] in ("tensorflow_probability", "tf_agents", "dreamer_tf") for m in sys.modules)
arrays = {f"tf2_{k}": np.stack(v) for k, v in tf2.items()}
arrays.update({f"tf1_{k}": np.stack(v) for k, v in tf1.items()})
np.savez(out_file, **arrays)
print("ok")
"""


@pytest.fixture(scope="module")
def rollout(restored):
  agent, config, _, _ = restored
  return _in_process_rollout(agent, config, STEPS)


def test_tensorflow_only_process_matches_in_process_policy(rollout, version_dir, generation, tmp_path):
  record = rollout
  assert record["is_first"][0] and len(set(record["action"].tolist())) >= 1
  np.savez(tmp_path / "data.npz", **record)
  args = (version_dir, tmp_path / "data.npz", tmp_path / "out.npz", generation)
  result = run_tf_only(FRESH_SCRIPT, *args, cwd=tmp_path)
  assert result.stdout.strip().endswith("ok")
  out = np.load(tmp_path / "out.npz")
  for loader in ("tf2", "tf1"):
    np.testing.assert_array_equal(out[f"{loader}_action"], record["action"], err_msg=loader)
    # Straight-through samples are one-hot up to float rounding (sample + probs - probs).
    np.testing.assert_array_equal(out[f"{loader}_stoch"].argmax(-1), record["stoch"].argmax(-1), err_msg=loader)
    np.testing.assert_allclose(out[f"{loader}_stoch"], record["stoch"], atol=1e-6, err_msg=loader)
    np.testing.assert_allclose(out[f"{loader}_prev_action"], record["prev_action"], atol=1e-6, err_msg=loader)
    np.testing.assert_allclose(out[f"{loader}_deter"], record["deter"], atol=1e-5, err_msg=loader)


def test_exported_policy_drives_a_real_environment_like_the_agent(restored, rollout, version_dir):
  """The loaded export steps the environment itself and takes the same greedy actions."""
  _, config, _, _ = restored
  record = rollout
  loaded = tf.saved_model.load(str(version_dir))
  action_fn = loaded.signatures["action"]
  state = loaded.signatures["get_initial_state"](batch_size=tf.constant(1))
  env = make_env(ENV, config, seed=3)
  time_step = env.reset()
  for t in range(STEPS):
    out = action_fn(
      image=np.asarray(time_step.observation["image"])[None],
      is_first=np.array([time_step.is_first()]),
      greedy=tf.constant(True),
      seed=tf.constant(t, tf.int64),
      **state,
    )
    state = {k: out[k] for k in export.STATE_KEYS}
    assert int(out["action"][0]) == int(record["action"][t]), t
    time_step = env.step(out["action"].numpy()[0])
  env.close()


def test_sampling_mode_and_random_seed(version_dir):
  loaded = tf.saved_model.load(str(version_dir))
  action_fn = loaded.signatures["action"]
  batch = 64
  state = loaded.signatures["get_initial_state"](batch_size=tf.constant(batch))
  image = np.random.default_rng(0).integers(0, 256, [batch, 64, 64, 3], dtype=np.uint8)
  inputs = dict(image=image, is_first=np.ones([batch], bool), **state)

  def call(greedy, seed):
    out = action_fn(**inputs, greedy=tf.constant(greedy), seed=tf.constant(seed, tf.int64))
    return out["action"].numpy(), out["stoch"].numpy()

  greedy, stoch = call(True, 1)
  np.testing.assert_array_equal(call(True, 1)[0], greedy)  # seed >= 0: reproducible.
  np.testing.assert_array_equal(call(True, 1)[1], stoch)
  sampled = call(False, 1)[0]
  np.testing.assert_array_equal(call(False, 1)[0], sampled)
  assert not np.array_equal(sampled, greedy)  # Sampling differs from the mode somewhere in the batch.
  assert not np.array_equal(call(False, -1)[0], call(False, -1)[0])  # seed < 0: a fresh random seed.
  assert not np.array_equal(call(True, -1)[1], call(True, -1)[1])  # The latent sample too.


def test_metadata(version_dir, restored, generation):
  _, config, _, _ = restored
  loaded = tf.saved_model.load(str(version_dir))
  out = {k: v.numpy() for k, v in loaded.signatures["get_metadata"](request=tf.constant(0)).items()}
  assert out["env_name"].decode() == ENV and out["train_step"] == TRAIN_STEP
  assert json.loads(out["metadata"])["generation"] == generation
  assert out["config"].decode() == config.to_yaml()
  assert json.loads(out["observation_spec"]) == {"image": {"dtype": "uint8", "shape": [64, 64, 3]}}
  action_spec = json.loads(out["action_spec"])
  assert action_spec["discrete"] and action_spec["dtype"] == "int32" and action_spec["maximum"] == 5
  assert json.loads(out["policy_state_spec"])["stoch"]["shape"] == [4, 4]
  assert json.loads(out["metadata"]) == _metadata(version_dir)
  state = loaded.signatures["get_initial_state"](batch_size=tf.constant(3))
  assert {k: tuple(v.shape) for k, v in state.items()} == {"deter": (3, 32), "stoch": (3, 4, 4), "prev_action": (3, 6)}
  assert all(not v.numpy().any() for v in state.values())


def _good_inputs(batch=2):
  return dict(
    image=np.zeros([batch, 64, 64, 3], np.uint8),
    is_first=np.ones([batch], bool),
    deter=np.zeros([batch, 32], np.float32),
    stoch=np.zeros([batch, 4, 4], np.float32),
    prev_action=np.zeros([batch, 6], np.float32),
    greedy=np.array(True),
    seed=np.array(1, np.int64),
  )


# (input changed, new value, text expected in the error) for the server-like path.
GRAPH_CASES = [
  ("deter", np.zeros([2, 64], np.float32), "input deter must have shape [batch, 32], got shape"),
  ("stoch", np.zeros([2, 16], np.float32), "input stoch must have shape [batch, 4, 4], got shape"),
  ("prev_action", np.zeros([2, 5], np.float32), "input prev_action must have shape [batch, 6]"),
  ("image", np.zeros([2, 64, 64], np.uint8), "input image must have shape [batch, 64, 64, 3]"),
  ("image", np.zeros([2, 32, 32, 3], np.uint8), "input image must have shape [batch, 64, 64, 3]"),
  ("is_first", np.ones([2, 1], bool), "input is_first must have shape [batch]"),
  ("deter", np.zeros([3, 32], np.float32), "input deter has batch size"),
  ("is_first", np.ones([1], bool), "input is_first has batch size"),
  ("greedy", np.array([True, False]), "input greedy must have a scalar"),
  ("seed", np.array([1, 2], np.int64), "input seed must have a scalar"),
  ("prev_action", np.full([2, 6], np.nan, np.float32), "input prev_action holds NaN or Inf"),
]


@pytest.fixture(scope="module")
def raw_session(version_dir):
  """The TF1 'serve' loader, fed without Python-side shape checks, as tensorflow_model_server does."""
  graph = tf.Graph()
  sess = tf.compat.v1.Session(graph=graph)
  meta_graph = tf.compat.v1.saved_model.loader.load(sess, ["serve"], str(version_dir))
  tensor = lambda info: graph.get_tensor_by_name(info.name)._as_tf_output()

  def run(feeds, signature="action"):
    sig = meta_graph.signature_def[signature]
    fetches = [tensor(sig.outputs[k]) for k in sorted(sig.outputs)]
    return sess._call_tf_sessionrun(None, {tensor(sig.inputs[k]): v for k, v in feeds.items()}, fetches, [], None)

  yield run
  sess.close()


@pytest.mark.parametrize("key,value,message", GRAPH_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(GRAPH_CASES)])
def test_wrong_inputs_rejected_in_graph_naming_the_input(raw_session, key, value, message):
  assert len(raw_session(_good_inputs())) == 4
  feeds = _good_inputs()
  feeds[key] = value
  # The checks run in parallel: repeat so that an op racing ahead of its check shows up here.
  for _ in range(20):
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
      raw_session(feeds)
    assert message in info.value.message


def test_non_scalar_batch_size_rejected_in_graph(raw_session):
  assert len(raw_session({"batch_size": np.array(2, np.int32)}, "get_initial_state")) == 3
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"input batch_size must have a scalar \(shape \[\]\)"):
    raw_session({"batch_size": np.array([2, 3], np.int32)}, "get_initial_state")


def test_wrong_inputs_rejected_by_the_loaded_signature(version_dir):
  action_fn = tf.saved_model.load(str(version_dir)).signatures["action"]
  inputs = _good_inputs()
  assert action_fn(**inputs)["action"].shape == (2,)
  missing = {k: v for k, v in inputs.items() if k != "image"}
  with pytest.raises(TypeError, match="image"):
    action_fn(**missing)
  with pytest.raises(TypeError, match="name='deter'"):
    action_fn(**{**inputs, "deter": np.zeros([2, 64], np.float32)})
  with pytest.raises(TypeError, match="name='image'"):
    action_fn(**{**inputs, "image": tf.zeros([2, 64, 64, 3], tf.float32)})
  for key, value in (("greedy", np.array([True, False])), ("seed", np.array([1, 2], np.int64))):
    with pytest.raises(TypeError, match=f"name='{key}'"):  # TensorFlow's own check of the scalar shape.
      action_fn(**{**inputs, key: value})
  with pytest.raises(tf.errors.InvalidArgumentError, match="input stoch has batch size"):
    action_fn(**{**inputs, "stoch": np.zeros([5, 4, 4], np.float32)})
  with pytest.raises(tf.errors.InvalidArgumentError, match="input batch_size must be a scalar >= 0"):
    tf.saved_model.load(str(version_dir)).signatures["get_initial_state"](batch_size=tf.constant(-1))


@ONLY_2023
def test_observation_keys_that_clash_are_refused(restored):
  agent, config, _, _ = restored
  spec = dict(agent.time_step_spec.observation, deter=tf.TensorSpec([3], tf.float32))
  fake = types.SimpleNamespace(
    policy=agent.policy,
    world_model=agent.world_model,
    actor_critic=agent.actor_critic,
    action_spec=agent.action_spec,
    time_step_spec=agent.time_step_spec._replace(observation=spec),
  )
  with pytest.raises(UserError, match="clash"):
    export.ExportedPolicy(fake, config, ENV, 0)
