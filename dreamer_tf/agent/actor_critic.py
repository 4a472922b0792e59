"""Actor-critic learning on imagined trajectories (Sec. 3)."""

import tensorflow as tf

from dreamer_tf.agent import networks, ops
from dreamer_tf.agent.return_normalizer import ReturnNormalizer
from dreamer_tf.agent.world_model import twohot_output

keras = tf.keras


class ActorCritic(keras.Model):
  """The actor, the critic, its slow (EMA) copy and the return normaliser.

  Args:
    feat_size: Size of the world model features.
    action_size: Number of discrete actions or continuous action dimensions.
    discrete: Whether actions are discrete (one-hot categorical actor with
      REINFORCE gradients) or continuous (bounded Normal with dynamics
      backpropagation), per ``actor_grad_disc`` / ``actor_grad_cont``.
    config: The ``model`` section of the configuration.
  """

  def __init__(self, feat_size, action_size, discrete, config, **kwargs):
    super().__init__(**kwargs)
    c = config
    self.config = c
    self.discrete = discrete
    self.action_size = action_size
    self.grad = c.actor_grad_disc if discrete else c.actor_grad_cont
    # With contdisc the continue probabilities carry the discount (ops.cont_target), so returns and
    # weights of imagined trajectories use 1; the replay value loss keeps 1 - 1/horizon.
    self.horizon_discount = 1.0 - 1.0 / c.horizon
    self.discount = 1.0 if c.contdisc else self.horizon_discount
    feat = (None, feat_size)
    kw = dict(norm_eps=c.norm_eps, norm=c.norm)
    if discrete:
      self.actor = networks.Head(
        "onehot",
        c.layers,
        c.units,
        size=action_size,
        unimix=c.actor_unimix,
        outscale=c.actor_outscale,
        name="actor",
        **kw,
      )
    else:
      self.actor = networks.Head(
        "normal",
        c.layers,
        c.units,
        size=action_size,
        minstd=c.actor_minstd,
        maxstd=c.actor_maxstd,
        outscale=c.actor_outscale,
        name="actor",
        **kw,
      )
    self.actor.build(feat)
    critic_kw = dict(bins=c.bins, outscale=c.critic_outscale, **kw)
    output = twohot_output(c)
    self.critic = networks.Head(output, c.layers, c.units, name="critic", **critic_kw)
    self.critic.build(feat)
    self.slow_critic = networks.Head(output, c.layers, c.units, name="slow_critic", trainable=False, **critic_kw)
    self.slow_critic.build(feat)
    for slow, fast in zip(self.slow_critic.weights, self.critic.weights):
      slow.assign(fast)
    self.retnorm = ReturnNormalizer(c.retnorm.decay, c.retnorm.max, c.retnorm.perclo, c.retnorm.perchi)
    self.slow_updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="slow_updates")

  def imagine(self, world_model, start, start_cont, seed):
    """Imagines ``imag_horizon`` steps from every start state with the actor.

    Args:
      world_model: The :class:`~dreamer_tf.agent.world_model.WorldModel`.
      start: RSSM state dict of ``[N, ...]`` start states (no gradients).
      start_cont: ``1 - is_terminal`` of the start states, ``[N]``.
      seed: Shape ``[2]`` integer seed.

    Returns:
      A dict of time-major ``[H + 1, N, ...]`` tensors: the RSSM state keys,
      ``action``, ``feat``, ``reward`` (``[H + 1, N]``, index 0 unused), ``cont``
      and ``weight`` (cumulative discounted continuation, the loss weights). With
      ``model.contdisc`` (the current generation), ``cont`` holds the predicted continue
      probabilities of all states and ``start_cont`` is unused.
    """
    rssm = world_model.rssm
    backprop = self.grad == "backprop"

    def policy_fn(state, step_seed):
      action = self.actor(tf.stop_gradient(rssm.get_feat(state))).sample(step_seed)
      return action if backprop else tf.stop_gradient(action)

    traj = rssm.imagine(policy_fn, start, self.config.imag_horizon, seed)
    feat = rssm.get_feat(traj)
    traj["feat"] = feat
    if self.config.contdisc:
      # The current generation: predicted continue probabilities of every state, the start's included.
      traj["cont"] = world_model.cont_head(feat).mean()
    else:
      cont = world_model.cont_head(feat).mode()
      traj["cont"] = tf.concat([tf.cast(start_cont, tf.float32)[None], cont[1:]], 0)
    traj["weight"] = ops.imagination_weights(traj["cont"], self.discount)
    traj["reward"] = world_model.reward_head(feat).mean()
    return traj

  def lambda_returns(self, traj, value):
    """Lambda returns ``R_0 .. R_{H-1}`` (Eq. 7) of a trajectory given its values ``[H + 1, N]``."""
    return ops.lambda_return(
      traj["reward"][1:], value[1:], traj["cont"][1:], value[-1], self.config.return_lambda, self.discount
    )

  def actor_loss(self, traj, value=None, ret=None):
    """Actor loss, Eq. 11-13: normalised advantages with an entropy bonus.

    Discrete actions use REINFORCE (``-log pi(a) sg(A)``), continuous ones
    backpropagate the return through the dynamics (``-A``); both subtract
    ``actent * H[pi]`` and are weighted by the predicted continuation.

    Args:
      traj: The imagined trajectory from :meth:`imagine`.
      value: Critic values ``[H + 1, N]``; computed here (differentiably, as
        dynamics backpropagation needs) when omitted.
      ret: The lambda returns of ``value``; computed when omitted.

    Returns:
      ``(loss, returns_HN, metrics)``.
    """
    sg = tf.stop_gradient
    if value is None:
      value = self.critic(traj["feat"]).mean()
    if ret is None:
      ret = self.lambda_returns(traj, value)
    _, scale = self.retnorm.update(sg(ret))
    adv = (ret - value[:-1]) / scale
    dist = self.actor(sg(traj["feat"][:-1]))
    if self.grad == "reinforce":
      loss = -dist.log_prob(sg(traj["action"][:-1])) * sg(adv)
    else:
      loss = -adv
    entropy = dist.entropy()
    loss -= self.config.actent * entropy
    loss = tf.reduce_mean(loss * sg(traj["weight"][:-1])) * self.config.loss_scales.actor
    metrics = dict(
      actor_loss=loss,
      actor_entropy=tf.reduce_mean(entropy),
      retnorm_scale=scale,
      retnorm_low=tf.identity(self.retnorm.low),
      retnorm_high=tf.identity(self.retnorm.high),
      imag_return=tf.reduce_mean(ret),
      imag_value=tf.reduce_mean(value),
      imag_reward=tf.reduce_mean(traj["reward"][1:]),
      imag_weight=tf.reduce_mean(traj["weight"]),
      advantage=tf.reduce_mean(adv),
    )
    return loss, ret, metrics

  def critic_loss(self, traj, ret, critic_logits=None):
    """Critic loss, Eq. 10: twohot regression of the lambda returns plus the
    slow-critic regulariser, weighted by the predicted continuation.

    Args:
      traj: The imagined trajectory.
      ret: Lambda returns ``[H, N]`` (targets, no gradient).
      critic_logits: The critic's logits on ``traj["feat"]`` (``[H + 1, N, bins]``)
        when the caller already computed them under the critic's tape.
    """
    sg = tf.stop_gradient
    feat = sg(traj["feat"][:-1])
    if critic_logits is None:
      dist = self.critic(feat)
    else:
      dist = self.critic.twohot(critic_logits[:-1])
    slow_target = sg(self.slow_critic(feat).mean())
    loss = -dist.log_prob(sg(ret)) - self.config.loss_scales.slowreg * dist.log_prob(slow_target)
    loss = tf.reduce_mean(loss * sg(traj["weight"][:-1])) * self.config.loss_scales.critic
    return loss, dict(critic_loss=loss, critic_value=tf.reduce_mean(dist.mean()))

  def replay_value_loss(self, feat_BT, data, boot_BT):
    """The current generation's replay value loss (``dreamerv3/agent.py:repl_loss``, scale 0.3).

    The critic regresses, on the replayed sequence's own features, the lambda returns of the
    replayed rewards and terminations bootstrapped at every step from the imagination return of the
    trajectory started there (:func:`~dreamer_tf.agent.ops.replay_lambda_return`), plus the
    slow-critic regulariser, weighted by ``1 - is_last``, on steps ``0 .. T - 2``. ``feat_BT`` is not
    stopped: the loss trains the world model's representations too (the author's ``repval_grad``).

    Args:
      feat_BT: Posterior features ``[B, T, F]``.
      data: The preprocessed batch (``reward``, ``is_terminal``, ``is_last``).
      boot_BT: Imagination returns ``R_0`` of the trajectories started at each step, ``[B, T]``.

    Returns:
      ``(loss, metrics)``: the scaled loss and diagnostics.
    """
    sg = tf.stop_gradient
    c = self.config
    ret = ops.replay_lambda_return(
      data["reward"], data["is_terminal"], data["is_last"], sg(boot_BT), c.return_lambda, self.horizon_discount
    )
    dist = self.critic(feat_BT[:, :-1])
    slow_target = sg(self.slow_critic(feat_BT[:, :-1]).mean())
    weight = 1.0 - tf.cast(data["is_last"][:, :-1], tf.float32)
    loss = -dist.log_prob(sg(ret)) - c.loss_scales.slowreg * dist.log_prob(slow_target)
    loss = tf.reduce_mean(loss * weight) * c.loss_scales.repval
    return loss, dict(repval_loss=loss, replay_return=tf.reduce_mean(ret))

  def update_slow_critic(self, applied=True):
    """Moves the slow critic towards the critic after an applied critic update.

    As the 2023 code's slow updater: the first applied update copies the
    critic fully (``mix = 1``); after it, every ``slow_critic_update``-th
    applied update counted from the first moves
    ``slow = (1 - 0.02) slow + 0.02 critic``. Nothing moves when ``applied``
    is false (a skipped, non-finite update).
    """
    applied = tf.cast(applied, tf.int64)
    count = self.slow_updates.read_value()  # Applied updates before this one.
    due = tf.cast(tf.equal(count % self.config.slow_critic_update, 0), tf.float32)
    mix = tf.minimum(1.0, tf.cast(tf.equal(count, 0), tf.float32) + self.config.slow_critic_fraction * due)
    mix *= tf.cast(applied, tf.float32)
    self.slow_updates.assign_add(applied)
    for slow, fast in zip(self.slow_critic.weights, self.critic.weights):
      slow.assign((1.0 - mix) * slow + mix * fast)
