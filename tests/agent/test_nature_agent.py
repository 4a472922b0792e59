"""The current generation's agent built from `--configs=nature,sizeNm`: every module's parameter count
equals the author's current code (reference_install_current.md: its own `agent.params` for a 64x64x3
uint8 image and 18 discrete actions)."""

import json
import math
import pathlib
import subprocess
import sys
import zlib

import numpy as np
import pytest
import tensorflow as tf
from agent_testlib import random_batch, with_replay_context
from tf_agents.specs import tensor_spec

from dreamer_tf.agent.actor_critic import ActorCritic
from dreamer_tf.agent.author_names import head_names, world_model_names
from dreamer_tf.agent.dreamer_agent import DreamerAgent, time_step_spec_from
from dreamer_tf.agent.laprop import LaProp
from dreamer_tf.agent.world_model import WorldModel
from dreamer_tf.config import load_config

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODULES = ("enc", "dyn", "dec", "rew", "con", "pol", "val")
AUTHOR_COUNTS = {
  "size1m": (14_304, 377_472, 80_595, 57_663, 41_153, 50_706, 66_111),
  "size12m": (220_416, 5_982_720, 1_272_003, 721_407, 656_129, 792_594, 853_503),
  "size25m": (493_824, 13_446_912, 2_857_635, 1_573_503, 1_475_713, 1_778_706, 1_869_951),
  "size50m": (876_032, 23_892_992, 5_076_355, 2_753_279, 2_622_977, 3_158_034, 3_279_615),
  "size100m": (1_966_848, 53_730_816, 11_413_059, 6_095_871, 5_900_545, 7_096_338, 7_278_591),
  "size200m": (3_492_864, 95_496_192, 20_282_115, 10_749_183, 10_488_833, 12_607_506, 12_850_431),
  "size400m": (7_850_496, 214_809_600, 45_617_283, 23_987_967, 23_597_569, 28_348_434, 28_712_703),
}
LARGE = ("size100m", "size200m", "size400m")
SIZE_PARAMS = [pytest.param(s, marks=pytest.mark.slow) if s in LARGE else s for s in AUTHOR_COUNTS]
IMAGE_OBS = {"image": tf.TensorSpec([64, 64, 3], tf.uint8, "image")}
ACTIONS_18 = tensor_spec.BoundedTensorSpec([], tf.int32, 0, 17, "action")


def _count(layer):
  return int(sum(v.shape.num_elements() for v in layer.trainable_variables))


@pytest.mark.parametrize("size", SIZE_PARAMS)
def test_module_counts_equal_the_author_code(size):
  # World model and actor-critic alone (no optimizer slots), built from the config as the agent builds them.
  model = load_config(None, ["nature", size]).model
  wm = WorldModel({"image": (64, 64, 3)}, 18, model)
  ac = ActorCritic(wm.rssm.feat_size, 18, True, model)
  modules = (wm.encoder, wm.rssm, wm.decoder, wm.reward_head, wm.cont_head, ac.actor, ac.critic)
  assert tuple(_count(m) for m in modules) == AUTHOR_COUNTS[size]
  assert _count(ac.slow_critic) == 0 and ac.slow_critic.count_params() == AUTHOR_COUNTS[size][-1]


def test_agent_module_counts():
  agent = DreamerAgent(time_step_spec_from(IMAGE_OBS), ACTIONS_18, load_config(None, ["nature", "size1m"]))
  counts = agent.module_counts()
  assert counts == dict(zip(MODULES, AUTHOR_COUNTS["size1m"]))
  totals = agent.parameter_counts()
  assert totals["world_model"] == sum(AUTHOR_COUNTS["size1m"][:5])
  assert (totals["actor"], totals["critic"]) == AUTHOR_COUNTS["size1m"][5:]


def test_count_params_tool_prints_the_modules():
  out = subprocess.run(
    [
      sys.executable,
      str(ROOT / "tools" / "count_params.py"),
      "--configs=nature,size1m",
      "--env=atari100k_pong",
      "--override=env.atari.actions=all",
    ],
    capture_output=True,
    text=True,
    cwd=ROOT,
    timeout=300,
  )
  assert out.returncode == 0, out.stderr[-2000:]
  modules, totals = (json.loads(line) for line in out.stdout.strip().splitlines()[-2:])
  assert modules == dict(zip(MODULES, AUTHOR_COUNTS["size1m"]))
  assert totals == {
    "world_model": sum(AUTHOR_COUNTS["size1m"][:5]),
    "actor": AUTHOR_COUNTS["size1m"][5],
    "critic": AUTHOR_COUNTS["size1m"][6],
  }


# --- One train step of the nature debug size ----------------------------------------------------------

B, T = 2, 6
MIXED_OBS = {
  "image": tf.TensorSpec([16, 16, 3], tf.uint8, "image"),
  "pos": tf.TensorSpec([3], tf.float32, "pos"),
  "level": tensor_spec.BoundedTensorSpec([], tf.int32, 0, 3, "level"),
}
CONTINUOUS = tensor_spec.BoundedTensorSpec([2], tf.float32, -1.0, 1.0, "action")


def _batch(obs_spec, action_spec, seed=0, config=None):
  """A random replay batch ``[B, T]`` in the step format (tests/agent/agent_testlib.py); with a ``config``
  of replay context K, ``[B, K + T]`` with its stored latents and window ids."""
  if config is None:
    return random_batch(obs_spec, action_spec, B, T, seed)
  return with_replay_context(random_batch(obs_spec, action_spec, B, config.replay.context + T, seed), config, seed)


def _nature_debug(*overrides):
  return load_config(None, ["nature", "debug"], ["replay.batch_size=2", "replay.batch_length=6", *overrides])


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"], indirect=True)
@pytest.mark.parametrize("action_spec", [ACTIONS_18, CONTINUOUS], ids=["discrete", "continuous"])
def test_nature_debug_train_step_is_finite(precision, action_spec):
  config = _nature_debug(f"run.precision={precision}")
  agent = DreamerAgent(time_step_spec_from(MIXED_OBS), action_spec, config)
  assert isinstance(agent.optimizers.model, LaProp) and agent.optimizers.actor is None
  assert agent.world_model.encoder.classes == {"level": 4}
  wm, ac = agent.world_model, agent.actor_critic
  modules = dict(
    enc=wm.encoder, dyn=wm.rssm, dec=wm.decoder, rew=wm.reward_head, con=wm.cont_head, pol=ac.actor, val=ac.critic
  )
  before = {k: [v.numpy().copy() for v in m.trainable_variables] for k, m in modules.items()}
  experience = _batch(MIXED_OBS, action_spec, config=config)
  # The first LaProp update has learning rate 0 (the warm-up reads the count before it moves): it only
  # fills the moments. The second moves every module.
  for _ in range(2):
    info = agent.train(experience)
  replay = info.extra.pop("replay")  # The replay context's write-back: the T trained steps' latents.
  assert replay["latent/deter"].shape == (B, T, config.model.deter) and replay["ids"].shape == (B,)
  extra = {k: float(v) for k, v in info.extra.items()}
  assert {"model_loss", "actor_loss", "critic_loss", "repval_loss", "grad_norm", "dyn_loss"} <= set(extra)
  assert all(math.isfinite(v) for v in extra.values()), extra
  assert int(agent.train_step_counter.numpy()) == 2 and extra["nonfinite"] == 0.0
  moved = {
    k: any(not np.array_equal(b, v.numpy()) for b, v in zip(before[k], m.trainable_variables))
    for k, m in modules.items()
  }
  assert all(moved.values()), moved


def test_nature_debug_train_step_under_xla():
  config = _nature_debug("run.jit_compile=true")
  agent = DreamerAgent(time_step_spec_from(MIXED_OBS), ACTIONS_18, config)
  train = tf.function(agent.train, jit_compile=True)
  for _ in range(2):
    info = train(_batch(MIXED_OBS, ACTIONS_18, config=config))
  assert np.isfinite(info.extra.pop("replay")["latent/deter"].numpy()).all()
  assert all(math.isfinite(float(v)) for v in info.extra.values())
  assert int(agent.train_step_counter.numpy()) == 2


def test_replay_value_loss_reaches_the_world_model():
  """Only the replay value loss: its gradient reaches the critic and the world model's representations."""
  config = _nature_debug()
  agent = DreamerAgent(time_step_spec_from(MIXED_OBS), ACTIONS_18, config)
  wm, ac = agent.world_model, agent.actor_critic
  data = agent.preprocess(tf.nest.map_structure(tf.constant, _batch(MIXED_OBS, ACTIONS_18)))
  # The critic's output layer starts at zero (outscale 0), which passes no gradient back: move it.
  kernel = ac.critic.out.kernel
  kernel.assign(np.random.default_rng(0).normal(size=kernel.shape).astype(np.float32) * 0.1)
  with tf.GradientTape() as tape:
    post, _ = wm.observe(data, tf.constant([0, 1]))
    loss, _ = ac.replay_value_loss(wm.rssm.get_feat(post), data, tf.ones_like(data["reward"]))
  # The posterior's path (encoder, block GRU, posterior layers) and the critic; the prior is not on it.
  rssm = wm.rssm
  variables = [*wm.encoder.trainable_variables, *rssm.core.trainable_variables, *rssm.post_logit.trainable_variables]
  variables += [*rssm.post[0].trainable_variables, *ac.critic.trainable_variables]
  grads = tape.gradient(loss, variables)
  assert all(g is not None and np.any(g.numpy()) for g in grads)
  assert float(loss) > 0


def test_imagination_weights_are_the_continue_probabilities():
  """contdisc: every imagined state's predicted continue probability, the start's included, and
  weights cumprod(cont) with discount 1 (dreamerv3/agent.py:imag_loss)."""
  model = _nature_debug().model
  wm = WorldModel({"image": (16, 16, 3)}, 18, model)
  ac = ActorCritic(wm.rssm.feat_size, 18, True, model)
  assert ac.discount == 1.0 and ac.horizon_discount == 1 - 1 / 333
  start = {k: v[:, 0] for k, v in wm.rssm.observe(
    tf.zeros([3, 1, wm.encoder.output_size]), tf.zeros([3, 1, 18]), tf.ones([3, 1], tf.bool), tf.constant([0, 1])
  )[0].items()}  # fmt: skip
  traj = ac.imagine(wm, start, tf.zeros([3]), tf.constant([2, 3]))
  probs = wm.cont_head(traj["feat"]).mean().numpy()
  np.testing.assert_allclose(traj["cont"].numpy(), probs, rtol=1e-6)
  np.testing.assert_allclose(traj["weight"].numpy(), np.cumprod(probs, 0), rtol=1e-5)
  assert traj["weight"].shape == (model.imag_horizon + 1, 3)


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"], indirect=True)
def test_nature_policy_acts_and_restarts_from_zeros(precision):
  from tf_agents.trajectories import time_step as ts

  agent = DreamerAgent(time_step_spec_from(MIXED_OBS), CONTINUOUS, _nature_debug(f"run.precision={precision}"))
  policy = agent.collect_policy
  rng = np.random.default_rng(0)
  obs = {
    "image": tf.constant(rng.integers(0, 256, size=(3, 16, 16, 3)), tf.uint8),
    "pos": tf.constant(rng.normal(size=(3, 3)), tf.float32),
    "level": tf.constant([0, 2, 3], tf.int32),
  }
  state = policy.get_initial_state(3)
  for i in range(3):
    step = ts.restart(obs, batch_size=3) if i == 0 else ts.transition(obs, tf.zeros([3]), tf.ones([3]))
    out = policy.action(step, state)
    assert out.action.shape == (3, 2) and np.all(np.abs(out.action.numpy()) <= 1.0)
    assert np.all(np.isfinite(out.state["deter"].numpy()))
    state = out.state
  # A FIRST step ignores the incoming state: the zero state of the current generation.
  a = agent.policy.action(ts.restart(obs, batch_size=3), state).state["deter"].numpy()
  b = agent.policy.action(ts.restart(obs, batch_size=3), policy.get_initial_state(3)).state["deter"].numpy()
  np.testing.assert_allclose(a, b, atol=1e-6)


def test_nature_agent_checkpoint_restores_weights_and_optimizer(tmp_path):
  config = _nature_debug()
  agent = DreamerAgent(time_step_spec_from(MIXED_OBS), ACTIONS_18, config)
  experience = _batch(MIXED_OBS, ACTIONS_18, config=config)
  for _ in range(2):
    agent.train(experience)
  path = tf.train.Checkpoint(agent=agent).write(str(tmp_path / "ckpt"))
  other = DreamerAgent(time_step_spec_from(MIXED_OBS), ACTIONS_18, config)
  tf.train.Checkpoint(agent=other).read(path).assert_existing_objects_matched()
  assert int(other.optimizers.model.iterations.numpy()) == 2
  data = agent.preprocess(tf.nest.map_structure(tf.constant, experience))
  a = agent.world_model.loss(data, tf.constant([0, 1]))[0]
  b = other.world_model.loss(data, tf.constant([0, 1]))[0]
  assert float(a) == float(b)
  for x, y in zip(agent.optimizers.model.variables, other.optimizers.model.variables):
    np.testing.assert_array_equal(x.numpy(), y.numpy())


# The world model's losses of dreamerv3/agent.py:Agent.loss (e3f0224, jax 0.4.33, float32), composed from
# the author's rssm.Encoder, rssm.RSSM.loss, rssm.Decoder and heads.MLPHead (reward symexp_twohot 255
# bins, continue binary with the contdisc target) for 64x64x3 images, deter 64, hidden = units 16,
# 4 x 4 latents, depth 2, 3 continuous actions, B 2 x T 3, latents = argmax; every parameter
# uniform(-0.5, 0.5) (scales 1 + that) seeded by the CRC32 of its name; inputs from default_rng(7) as in
# _author_wm_inputs. Recorded: each loss of every (b, t).
AUTHOR_WM_LOSSES = {
  "cont": [0.706119954586029, 0.6961513757705688, 0.6211151480674744, 0.8467907905578613, 0.8570916056632996,
           0.706119954586029],
  "dyn": [3.3091039657592773, 2.9925148487091064, 2.5799741744995117, 3.1894097328186035, 2.6755905151367188,
          3.3952043056488037],
  "image": [2193.212890625, 2186.3271484375, 2108.41552734375, 2110.8271484375, 2076.2861328125, 2225.115478515625],
  "rep": [3.3091039657592773, 2.9925148487091064, 2.5799741744995117, 3.1894097328186035, 2.6755905151367188,
          3.3952043056488037],
  "reward": [6.05281925201416, 5.452251434326172, 5.675041198730469, 5.350983619689941, 5.895782470703125,
             4.758113384246826],
}  # fmt: skip


def _author_wm_inputs():
  rng = np.random.default_rng(7)
  image = rng.integers(0, 256, size=(2, 3, 64, 64, 3)).astype(np.uint8)
  prevact = rng.uniform(-1, 1, size=(2, 3, 3)).astype(np.float32)
  reset = np.array([[True, False, False], [True, False, True]])
  reward = rng.normal(size=(2, 3)).astype(np.float32) * 3
  term = np.array([[False, False, True], [False, False, False]])
  # WorldModel.observe shifts data["action"] by one step to get the previous actions.
  action = np.concatenate([prevact[:, 1:], np.zeros_like(prevact[:, :1])], 1)
  return dict(obs={"image": image}, action=action, reward=reward, is_first=reset, is_terminal=term)


def _author_wm_names(wm):
  return world_model_names(wm)


def test_world_model_losses_equal_the_author_code(monkeypatch):
  from dreamer_tf.agent import distributions

  monkeypatch.setattr(distributions.OneHotCategorical, "sample", lambda self, seed: self.mode())
  overrides = ["model.deter=64", "model.units=16", "model.vector_units=16", "model.classes=4", "model.stoch=4"]
  model = load_config(None, ["nature"], [*overrides, "model.cnn_depth=2"]).model
  wm = WorldModel({"image": (64, 64, 3)}, 3, model)
  names = _author_wm_names(wm)
  assert len(names) == len(wm.trainable_variables) == 68
  for name, var in names.items():
    value = np.random.default_rng(zlib.crc32(name.encode())).uniform(-0.5, 0.5, size=var.shape)
    var.assign(value.astype(np.float32) + (1.0 if name.endswith("/scale") else 0.0))
  data = tf.nest.map_structure(tf.constant, _author_wm_inputs())
  loss, _, metrics = wm.loss(data, tf.constant([0, 1]))
  for key, values in AUTHOR_WM_LOSSES.items():
    np.testing.assert_allclose(float(metrics[f"{key}_loss"]), np.mean(values), rtol=1e-5, err_msg=key)
  expected = sum(np.mean(v) * s for v, s in zip(AUTHOR_WM_LOSSES.values(), (1.0, 1.0, 1.0, 0.1, 1.0)))
  np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


# dreamerv3/agent.py:imag_loss (e3f0224, jax 0.4.33, float32) on fixed imagined trajectories: N 4 x 6
# states of 10 features, 2 continuous actions, rewards and continue probabilities from default_rng(11) as
# in _author_imag_inputs; its policy (bounded_normal, 3 x 16, outscale 0.01) and value (symexp_twohot,
# 3 x 16) MLPHeads with crc32 weights, the slow value equal to the value, a fresh perc return normaliser
# (rate 0.01, limit 1), contdisc, slowtar False, lambda 0.95, actent 3e-4, slowreg 1.
AUTHOR_IMAG = dict(scale=15637.5087890625, policy=162.1000213623047, value=6.057199954986572)


def _author_imag_inputs():
  rng = np.random.default_rng(11)
  feat = rng.normal(size=(4, 6, 10)).astype(np.float32)
  act = rng.uniform(-1, 1, size=(4, 6, 2)).astype(np.float32)
  rew = rng.normal(size=(4, 6)).astype(np.float32)
  con = rng.uniform(0.6, 1.0, size=(4, 6)).astype(np.float32)
  return feat, act, rew, con


def test_actor_and_critic_losses_equal_the_author_code():
  model = load_config(None, ["nature"], ["model.units=16"]).model
  ac = ActorCritic(10, 2, False, model)
  names = {}
  head_names(names, "pol", ac.actor, ("action/mean", "action/stddev"))
  head_names(names, "val", ac.critic, ("logits",))
  assert len(names) == len(ac.actor.trainable_variables) + len(ac.critic.trainable_variables) == 24
  for name, var in names.items():
    value = np.random.default_rng(zlib.crc32(name.encode())).uniform(-0.5, 0.5, size=var.shape)
    var.assign(value.astype(np.float32) + (1.0 if name.endswith("/scale") else 0.0))
  for slow, fast in zip(ac.slow_critic.weights, ac.critic.weights):
    slow.assign(fast)
  feat, act, rew, con = (tf.constant(np.swapaxes(x, 0, 1)) for x in _author_imag_inputs())  # time-major
  traj = dict(feat=feat, action=act, reward=rew, cont=con, weight=tf.math.cumprod(con, 0))
  value = ac.critic(feat).mean()
  ret = ac.lambda_returns(traj, value)
  actor_loss, _, metrics = ac.actor_loss(traj, value, ret)
  critic_loss, _ = ac.critic_loss(traj, ret)
  np.testing.assert_allclose(float(metrics["retnorm_scale"]), AUTHOR_IMAG["scale"], rtol=1e-5)
  np.testing.assert_allclose(float(actor_loss), AUTHOR_IMAG["policy"], rtol=1e-4)
  np.testing.assert_allclose(float(critic_loss), AUTHOR_IMAG["value"], rtol=1e-5)


def test_replay_value_loss_equals_the_author_code():
  """dreamerv3/agent.py:repl_loss (e3f0224, float32) with its value MLPHead (symexp_twohot, 3 x 16, crc32
  weights, the slow value equal to the value, no valnorm, lambda 0.95, horizon 333, slowreg 1) on B 3 x T 7
  replayed steps from default_rng(13): mean loss 6.421182155609131 before the 0.3 scale."""
  rng = np.random.default_rng(13)
  feat = rng.normal(size=(3, 7, 10)).astype(np.float32)
  rew = rng.normal(size=(3, 7)).astype(np.float32)
  term = rng.uniform(size=(3, 7)) < 0.2
  last = term | (rng.uniform(size=(3, 7)) < 0.15)
  boot = rng.normal(size=(3, 7)).astype(np.float32) * 3
  model = load_config(None, ["nature"], ["model.units=16"]).model
  ac = ActorCritic(10, 2, False, model)
  for i, layer in enumerate(ac.critic.trunk.hidden):
    named = {f"val/mlp/linear{i}/kernel": layer.dense.kernel, f"val/mlp/linear{i}/bias": layer.dense.bias}
    named[f"val/mlp/norm{i}/scale"] = layer.norm.scale
    for name, var in named.items():
      value = np.random.default_rng(zlib.crc32(name.encode())).uniform(-0.5, 0.5, size=var.shape)
      var.assign(value.astype(np.float32) + (1.0 if name.endswith("/scale") else 0.0))
  for name, var in (("val/head/logits/kernel", ac.critic.out.kernel), ("val/head/logits/bias", ac.critic.out.bias)):
    var.assign(np.random.default_rng(zlib.crc32(name.encode())).uniform(-0.5, 0.5, size=var.shape).astype(np.float32))
  for slow, fast in zip(ac.slow_critic.weights, ac.critic.weights):
    slow.assign(fast)
  data = dict(reward=tf.constant(rew), is_terminal=tf.constant(term), is_last=tf.constant(last))
  loss, _ = ac.replay_value_loss(tf.constant(feat), data, tf.constant(boot))
  np.testing.assert_allclose(float(loss), 0.3 * 6.421182155609131, rtol=1e-5)
