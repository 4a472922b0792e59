"""The world model: encoder, RSSM, decoder, reward and continue predictors (Sec. 2)."""

import tensorflow as tf

from dreamer_tf.agent import networks, ops

keras = tf.keras


class WorldModel(keras.Model):
  """DreamerV3's world model as a Keras model.

  Components (Eq. 3): the :class:`~dreamer_tf.agent.networks.MultiEncoder`
  embeds observations, the :class:`~dreamer_tf.agent.networks.RSSM` carries the
  latent state, the :class:`~dreamer_tf.agent.networks.MultiDecoder`
  reconstructs observations, and twohot/Bernoulli heads predict rewards and
  episode continuation from the features ``concat(h_t, z_t)``.

  Args:
    obs_shapes: ``{key: shape}`` of the observation (without batch dims).
    action_size: Size of the action vector (one-hot size for discrete actions).
    config: The ``model`` section of the configuration.
  """

  def __init__(self, obs_shapes, action_size, config, **kwargs):
    super().__init__(**kwargs)
    c = config
    self.obs_shapes = {k: tuple(v) for k, v in obs_shapes.items()}
    self.action_size = action_size
    self.config = c
    self.encoder = networks.MultiEncoder(
      self.obs_shapes,
      c.cnn_keys,
      c.mlp_keys,
      c.cnn_depth,
      c.vector_layers,
      c.vector_units,
      c.minres,
      c.symlog_inputs,
      c.norm_eps,
      name="encoder",
    )
    self.rssm = networks.RSSM(
      c.deter, c.units, c.stoch, c.classes, c.unimix, c.initial, c.action_clip, c.norm_eps, name="rssm"
    )
    self.rssm.build_for(self.encoder.output_size, action_size)
    feat = (None, self.rssm.feat_size)
    self.decoder = networks.MultiDecoder(
      self.obs_shapes,
      c.cnn_keys,
      c.mlp_keys,
      c.cnn_depth,
      c.vector_layers,
      c.vector_units,
      c.minres,
      c.norm_eps,
      name="decoder",
    )
    self.decoder.build(feat)
    self.reward_head = networks.Head(
      "twohot", c.layers, c.units, bins=c.bins, outscale=c.reward_outscale, norm_eps=c.norm_eps, name="reward"
    )
    self.reward_head.build(feat)
    self.cont_head = networks.Head("binary", c.layers, c.units, outscale=1.0, norm_eps=c.norm_eps, name="cont")
    self.cont_head.build(feat)
    self.loss_scales = dict(c.loss_scales)
    self.free_nats = c.free_nats

  def call(self, data, seed):
    return self.loss(data, seed)[0]

  def observe(self, data, seed, state=None):
    """Posterior and prior states ``[B, T, ...]`` of a batch of sequences."""
    embed = self.encoder(data["obs"])
    action = data["action"]
    prev_action = tf.concat([tf.zeros_like(action[:, :1]), action[:, :-1]], 1)
    return self.rssm.observe(embed, prev_action, data["is_first"], seed, state)

  def loss(self, data, seed):
    """The world model loss, Eq. 5 (prediction, dynamics and representation terms).

    ``L = 1.0 L_pred + 0.5 L_dyn + 0.1 L_rep`` averaged over batch and time, where
    L_pred sums the decoder's negative log-likelihoods (image MSE summed over
    pixels, symlog-MSE for vectors), the reward's twohot cross-entropy and the
    continue flag's Bernoulli loss; the KL terms are balanced with stop-gradients
    and clipped below at ``free_nats`` (free bits, Eq. 5).

    Args:
      data: A preprocessed batch (see ``DreamerAgent.preprocess``) of ``[B, T]``.
      seed: Shape ``[2]`` integer seed.

    Returns:
      ``(loss, post, metrics)``: the scalar loss, the posterior states and a dict of
      scalar diagnostics.
    """
    post, prior = self.observe(data, seed)
    feat = self.rssm.get_feat(post)
    losses = {}
    for key, dist in self.decoder(feat).items():
      target = tf.cast(data["obs"][key], tf.float32)
      if key in self.decoder.cnn_keys:
        target = target / 255.0
      losses[key] = -dist.log_prob(target)
    losses["reward"] = -self.reward_head(feat).log_prob(data["reward"])
    cont_target = ops.cont_target(data["is_terminal"], self.config.horizon, self.config.contdisc)
    losses["cont"] = -self.cont_head(feat).log_prob(cont_target)
    post_dist, prior_dist = self.rssm.get_dist(post), self.rssm.get_dist(prior)
    losses["dyn"], losses["rep"], kl_dyn, kl_rep = self.rssm.kl_losses(post, prior, self.free_nats)
    total_BT = 0.0
    for key, value in losses.items():
      scale_key = key
      if key in self.decoder.cnn_keys:
        scale_key = "image"
      elif key in self.decoder.mlp_keys:
        scale_key = "vector"
      total_BT += self.loss_scales[scale_key] * value
    loss = tf.reduce_mean(total_BT)
    metrics = {f"{k}_loss": tf.reduce_mean(v) for k, v in losses.items()}
    metrics.update(
      model_loss=loss,
      kl_dyn=tf.reduce_mean(kl_dyn),
      kl_rep=tf.reduce_mean(kl_rep),
      post_ent=tf.reduce_mean(post_dist.entropy()),
      prior_ent=tf.reduce_mean(prior_dist.entropy()),
      reward_error=tf.reduce_mean(tf.abs(self.reward_head(feat).mean() - tf.cast(data["reward"], tf.float32))),
    )
    return loss, post, metrics

  def open_loop(self, data, seed, context: int = 5):
    """Open-loop video prediction: observe ``context`` steps, then imagine the rest.

    Returns ``{key: [B, T, H, W, C] float in [0, 1]}`` predictions of each image
    key (the first ``context`` steps are reconstructions).
    """
    seed_obs, seed_img = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    ctx = tf.nest.map_structure(lambda x: x[:, :context], data)
    post, _ = self.observe(ctx, seed_obs)
    recon = self.decoder(self.rssm.get_feat(post))
    start = {k: v[:, -1] for k, v in post.items()}
    actions = tf.transpose(data["action"][:, context - 1 : -1], [1, 0, 2])
    seeds = tf.random.experimental.stateless_split(seed_img, tf.shape(actions)[0])

    def step(prev, inp):
      action, step_seed = inp
      return self.rssm.img_step(prev, action, step_seed)

    prior = tf.scan(step, (actions, seeds), initializer=start)
    prior = {k: tf.transpose(v, [1, 0] + list(range(2, v.shape.rank))) for k, v in prior.items()}
    openl = self.decoder(self.rssm.get_feat(prior))
    return {
      k: tf.clip_by_value(tf.concat([recon[k].mode(), openl[k].mode()], 1), 0.0, 1.0) for k in self.decoder.cnn_keys
    }
