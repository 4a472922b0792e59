"""Actor-critic losses (Eq. 10-13) against an independent NumPy implementation."""

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.specs import tensor_spec

from dreamer_tf.agent.actor_critic import ActorCritic
from dreamer_tf.agent.dreamer_agent import DreamerAgent, time_step_spec_from
from dreamer_tf.config import load_config

ACTIONS = 6
H1, N = 6, 4  # imag_horizon + 1 of the debug preset, start states


@pytest.fixture(scope="module")
def config():
  return load_config("atari100k_pong", ["debug"])


@pytest.fixture(scope="module")
def agent(config):
  obs = {"image": tf.TensorSpec([16, 16, 3], tf.uint8, "image")}
  action = tensor_spec.BoundedTensorSpec([], tf.int32, 0, ACTIONS - 1, "action")
  return DreamerAgent(time_step_spec_from(obs), action, config)


def _randomise(head, rng, scale=0.3):
  for var in head.weights:
    var.assign(rng.normal(size=var.shape).astype(np.float32) * scale)


def _np_head(head, feat):
  """NumPy forward pass of a Head: [Dense (no bias) -> LayerNorm -> SiLU] x layers -> Dense."""
  x = feat.astype(np.float64)
  for layer in head.trunk.hidden:
    x = x @ layer.dense.kernel.numpy()
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    x = (x - mean) / np.sqrt(var + layer.norm_eps)
    x = x * layer.layer_norm.gamma.numpy() + layer.layer_norm.beta.numpy()
    x = x / (1 + np.exp(-x))
  out = x @ head.out.dense.kernel.numpy() + head.out.dense.bias.numpy()
  if head.std is not None:
    return out, x @ head.std.dense.kernel.numpy() + head.std.dense.bias.numpy()
  return out


def _np_log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _np_symlog(x):
  return np.sign(x) * np.log1p(np.abs(x))


def _np_symexp(x):
  return np.sign(x) * np.expm1(np.abs(x))


def _np_twohot(x, bins):
  x = np.clip(x, bins[0], bins[-1])
  hi = np.clip(np.searchsorted(bins, x, side="right"), 1, len(bins) - 1)
  lo = hi - 1
  frac = (x - bins[lo]) / (bins[hi] - bins[lo])
  out = np.zeros(x.shape + (len(bins),))
  np.put_along_axis(out, lo[..., None], (1 - frac)[..., None], -1)
  np.add.at(out, tuple(np.indices(x.shape)) + (hi,), frac)
  return out


def _np_bins(k):
  return np.linspace(-20.0, 20.0, k)


def _np_critic_mean(head, feat):
  logits = _np_head(head, feat)
  return _np_symexp((np.exp(_np_log_softmax(logits)) * _np_bins(head.bins)).sum(-1))


def _np_lambda_return(reward, value, cont, bootstrap, lam, disc):
  out = np.zeros_like(reward)
  nxt = bootstrap
  for t in reversed(range(len(reward))):
    out[t] = reward[t] + disc * cont[t] * ((1 - lam) * value[t] + lam * nxt)
    nxt = out[t]
  return out


def test_np_twohot_helper():
  np.testing.assert_allclose(
    _np_twohot(np.array([0.25, 3.0, -1.0]), np.array([-1.0, 0, 1])), [[0, 0.75, 0.25], [0, 0, 1], [1, 0, 0]]
  )


def _traj(ac, rng, discrete=True, reward_scale=80.0):
  feat = rng.normal(size=(H1, N, ac.actor.trunk.hidden[0].dense.kernel.shape[0])).astype(np.float32)
  if discrete:
    action = np.eye(ACTIONS, dtype=np.float32)[rng.integers(0, ACTIONS, size=(H1, N))]
  else:
    action = rng.uniform(-1, 1, size=(H1, N, 2)).astype(np.float32)
  reward = (rng.normal(size=(H1, N)) * reward_scale).astype(np.float32)
  cont = np.ones((H1, N), np.float32)
  cont[3:, 1] = 0.0  # one imagined episode ends
  weight = np.cumprod(ac.discount * cont, 0) / ac.discount
  return {
    k: tf.constant(v.astype(np.float32))
    for k, v in dict(feat=feat, action=action, reward=reward, cont=cont, weight=weight).items()
  }


def _reset_retnorm(ac):
  ac.retnorm.low.assign(0.0)
  ac.retnorm.high.assign(0.0)


def test_zero_initialised_heads_predict_zero(config):
  obs = {"image": tf.TensorSpec([16, 16, 3], tf.uint8, "image")}
  action = tensor_spec.BoundedTensorSpec([], tf.int32, 0, ACTIONS - 1, "action")
  fresh = DreamerAgent(time_step_spec_from(obs), action, config)
  feat = tf.constant(np.random.default_rng(0).normal(size=(7, fresh.world_model.rssm.feat_size)), tf.float32)
  for head in (fresh.world_model.reward_head, fresh.actor_critic.critic, fresh.actor_critic.slow_critic):
    np.testing.assert_allclose(head(feat).mean().numpy(), 0.0, atol=1e-6)
  # The slow critic starts as a copy of the critic.
  for slow, fast in zip(fresh.actor_critic.slow_critic.weights, fresh.actor_critic.critic.weights):
    np.testing.assert_array_equal(slow.numpy(), fast.numpy())


def test_actor_and_critic_losses_match_numpy(agent, config):
  ac = agent.actor_critic
  c = config.model
  rng = np.random.default_rng(1)
  for head in (ac.actor, ac.critic, ac.slow_critic):
    _randomise(head, rng)
  traj = _traj(ac, rng)
  t = {k: v.numpy().astype(np.float64) for k, v in traj.items()}
  _reset_retnorm(ac)
  actor_loss, ret, metrics = ac.actor_loss(traj)

  # NumPy: lambda returns from the critic's values, percentile normalisation, REINFORCE.
  value = _np_critic_mean(ac.critic, t["feat"])
  disc = 1 - 1 / c.horizon
  ret_np = _np_lambda_return(t["reward"][1:], value[1:], t["cont"][1:], value[-1], c.return_lambda, disc)
  np.testing.assert_allclose(ret.numpy(), ret_np, rtol=1e-4, atol=1e-3)
  low = 0.01 * np.percentile(ret_np, 5)
  high = 0.01 * np.percentile(ret_np, 95)
  scale = max(1.0, high - low)
  assert scale > 1.0, "the test should exercise the normalisation"
  np.testing.assert_allclose(metrics["retnorm_scale"].numpy(), scale, rtol=1e-4)
  adv = (ret_np - value[:-1]) / scale
  logp = np.log(0.99 * np.exp(_np_log_softmax(_np_head(ac.actor, t["feat"][:-1]))) + 0.01 / ACTIONS)
  logpi = (t["action"][:-1] * logp).sum(-1)
  ent = -(np.exp(logp) * logp).sum(-1)
  loss = (-logpi * adv - c.actent * ent) * t["weight"][:-1]
  expected_actor = loss.mean() * c.loss_scales.actor
  np.testing.assert_allclose(actor_loss.numpy(), expected_actor, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(metrics["actor_entropy"].numpy(), ent.mean(), rtol=1e-4)

  # Critic: twohot cross-entropy with the returns plus the slow-critic regulariser.
  critic_loss, _ = ac.critic_loss(traj, ret)
  bins = _np_bins(c.bins)
  logq = _np_log_softmax(_np_head(ac.critic, t["feat"][:-1]))
  slow = _np_critic_mean(ac.slow_critic, t["feat"][:-1])
  nll_ret = -(_np_twohot(_np_symlog(ret.numpy().astype(np.float64)), bins) * logq).sum(-1)
  nll_slow = -(_np_twohot(_np_symlog(slow), bins) * logq).sum(-1)
  loss = (nll_ret + c.loss_scales.slowreg * nll_slow) * t["weight"][:-1]
  np.testing.assert_allclose(critic_loss.numpy(), loss.mean() * c.loss_scales.critic, rtol=1e-4)


def _weights(head):
  return [v.numpy() for v in head.weights]


def test_slow_critic_copies_at_the_first_update_then_moves_by_ema(agent):
  # The 2023 code's slow updater: mix 1 at its first call (after the first critic update), then 0.02.
  ac = agent.actor_critic
  ac.slow_updates.assign(0)
  rng = np.random.default_rng(2)
  _randomise(ac.critic, rng)
  _randomise(ac.slow_critic, rng)
  slow = _weights(ac.slow_critic)
  ac.update_slow_critic(applied=False)  # A skipped (non-finite) update moves nothing.
  for new, s in zip(_weights(ac.slow_critic), slow):
    np.testing.assert_array_equal(new, s)
  assert int(ac.slow_updates.numpy()) == 0
  fast = _weights(ac.critic)
  ac.update_slow_critic()
  for new, f in zip(_weights(ac.slow_critic), fast):
    np.testing.assert_array_equal(new, f)  # A full copy.
  _randomise(ac.critic, rng)
  fast, slow = _weights(ac.critic), _weights(ac.slow_critic)
  ac.update_slow_critic()
  for new, s, f in zip(_weights(ac.slow_critic), slow, fast):
    np.testing.assert_allclose(new, 0.98 * s + 0.02 * f, rtol=1e-6, atol=1e-7)
  assert int(ac.slow_updates.numpy()) == 2
  assert not ac.slow_critic.trainable_weights
  for new, f in zip(_weights(ac.critic), fast):
    np.testing.assert_array_equal(new, f)


def test_slow_critic_update_period(config):
  # slow_critic_update=3: a full copy at the first applied update, then EMA steps at the 4th, 7th, ...
  model = config.update({"model.slow_critic_update": 3}).model
  ac = ActorCritic(model.deter + model.stoch * model.classes, 2, False, model)
  rng = np.random.default_rng(5)
  moved = []
  for _ in range(7):
    _randomise(ac.critic, rng)
    before = _weights(ac.slow_critic)
    ac.update_slow_critic()
    after = _weights(ac.slow_critic)
    moved.append(not all(np.array_equal(a, b) for a, b in zip(after, before)))
  assert moved == [True, False, False, True, False, False, True]


def test_discrete_actor_uses_reinforce_without_gradient_through_advantage(agent):
  ac = agent.actor_critic
  assert ac.grad == "reinforce"
  rng = np.random.default_rng(3)
  _randomise(ac.critic, rng)
  traj = _traj(ac, rng)
  _reset_retnorm(ac)
  with tf.GradientTape(persistent=True) as tape:
    tape.watch([traj["reward"], traj["feat"]])
    loss, _, _ = ac.actor_loss(traj)
  assert tape.gradient(loss, traj["reward"]) is None
  grads = tape.gradient(loss, ac.actor.trainable_variables)
  assert all(g is not None for g in grads)
  assert max(float(tf.reduce_max(tf.abs(g))) for g in grads) > 0


@pytest.fixture(scope="module")
def continuous_ac(config):
  return ActorCritic(config.model.deter + config.model.stoch * config.model.classes, 2, False, config.model)


def test_continuous_actor_backpropagates_through_dynamics(continuous_ac):
  ac = continuous_ac
  assert ac.grad == "backprop"
  rng = np.random.default_rng(4)
  _randomise(ac.critic, rng)
  traj = _traj(ac, rng, discrete=False)
  _reset_retnorm(ac)
  with tf.GradientTape() as tape:
    tape.watch(traj["reward"])
    loss, _, metrics = ac.actor_loss(traj)
  grad = tape.gradient(loss, traj["reward"])
  assert grad is not None
  # d loss / d r_t = -weight_t/scale * d R_t/d r_t (no gradient through the entropy).
  scale = float(metrics["retnorm_scale"])
  grad = grad.numpy()
  assert np.all(grad[0] == 0)  # index 0 is the start state's unused reward
  assert np.all(grad[1:] <= 0) and np.abs(grad[1:]).max() > 0
  expected_first = -1.0 / (traj["weight"].shape[0] - 1) / N / scale * traj["weight"][0].numpy()
  np.testing.assert_allclose(grad[1], expected_first, rtol=1e-4)


def test_imagine_weights_and_shapes(agent, config):
  wm, ac = agent.world_model, agent.actor_critic
  start = wm.rssm.initial(N)
  start_cont = tf.constant([1.0, 0.0, 1.0, 1.0])
  traj = ac.imagine(wm, start, start_cont, tf.constant([3, 4]))
  assert traj["feat"].shape == (H1, N, wm.rssm.feat_size)
  assert traj["action"].shape == (H1, N, ACTIONS)
  np.testing.assert_array_equal(traj["cont"][0].numpy(), start_cont.numpy())
  disc = 1 - 1 / config.model.horizon
  expected = np.cumprod(disc * traj["cont"].numpy(), 0) / disc
  np.testing.assert_allclose(traj["weight"].numpy(), expected, rtol=1e-6)
  np.testing.assert_allclose(traj["weight"][0].numpy(), start_cont.numpy())
  np.testing.assert_allclose(traj["reward"].numpy(), wm.reward_head(traj["feat"]).mean().numpy(), rtol=1e-6)
  np.testing.assert_allclose(traj["action"].numpy().sum(-1), 1.0, atol=1e-6)
