"""The world model: encoder, RSSM, decoder, reward and continue predictors (Sec. 2)."""

import tensorflow as tf

from dreamer_tf.agent import networks, ops

keras = tf.keras


def observation_classes(observation_spec) -> dict:
  """``{key: classes}`` of the bounded integer vector observations (rank 0 or 1) of a spec dict.

  Classes are ``maximum + 1``: values are class indices from 0, as the author's current code
  one-hot encodes them (``embodied/jax/nets.py:DictConcat``).
  """
  classes = {}
  for key, spec in observation_spec.items():
    maximum = getattr(spec, "maximum", None)
    if spec.dtype.is_integer and len(spec.shape) <= 1 and maximum is not None and not key.startswith("log_"):
      classes[key] = int(max(int(m) for m in tf.reshape(tf.constant(maximum), [-1]).numpy())) + 1
  return classes


def twohot_output(config):
  """The :class:`~dreamer_tf.agent.networks.Head` output of the reward and critic for ``model.twohot``."""
  return {"symlog": "twohot", "symexp": "symexp_twohot"}[config.twohot]


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
    config: The ``model`` section of the configuration; ``core``, ``norm`` and ``cnn`` choose the
      2023 or the current generation's layers.
    obs_classes: ``{key: classes}`` of integer vector observations, one-hot encoded when
      ``model.onehot_obs`` is set.
  """

  def __init__(self, obs_shapes, action_size, config, obs_classes=None, **kwargs):
    super().__init__(**kwargs)
    c = config
    self.obs_shapes = {k: tuple(v) for k, v in obs_shapes.items()}
    self.action_size = action_size
    self.config = c
    classes = dict(obs_classes or {}) if c.onehot_obs else {}
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
      norm=c.norm,
      cnn=c.cnn,
      classes=classes,
      name="encoder",
    )
    if c.core == "gru":
      self.rssm = networks.RSSM(
        c.deter, c.units, c.stoch, c.classes, c.unimix, c.initial, c.action_clip, c.norm_eps, name="rssm"
      )
    else:
      self.rssm = networks.BlockRSSM(
        c.deter,
        c.units,
        c.stoch,
        c.classes,
        c.unimix,
        c.blocks,
        c.prior_layers,
        c.post_layers,
        c.dyn_layers,
        c.norm_eps,
        name="rssm",
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
      norm=c.norm,
      cnn=c.cnn,
      classes=classes,
      deter_size=c.deter,
      bspace=c.bspace,
      name="decoder",
    )
    self.decoder.build(feat)
    head_layers = c.head_layers or c.layers
    head_kw = dict(norm_eps=c.norm_eps, norm=c.norm)
    self.reward_head = networks.Head(
      twohot_output(c), head_layers, c.units, bins=c.bins, outscale=c.reward_outscale, name="reward", **head_kw
    )
    self.reward_head.build(feat)
    self.cont_head = networks.Head("binary", head_layers, c.units, outscale=1.0, name="cont", **head_kw)
    self.cont_head.build(feat)
    self.loss_scales = dict(c.loss_scales)
    self.free_nats = c.free_nats

  def call(self, data, seed):
    return self.loss(data, seed)[0]

  def observe(self, data, seed, start=None):
    """Posterior and prior states ``[B, T, ...]`` of a batch of sequences.

    Args:
      data: A preprocessed batch of ``[B, T]``.
      seed: Shape ``[2]`` integer seed.
      start: None (start from the initial state with a zero previous action), or the replay
        context's start: ``{"deter", "stoch", "action"}`` of ``[B, ...]``, the stored latent of the
        step before the window and the action taken there (the current generation's
        ``replay_context``, ``dreamerv3/agent.py:Agent._apply_replay_context``).
    """
    embed = self.encoder(data["obs"])
    action = data["action"]
    first_action, state = tf.zeros_like(action[:, :1]), None
    if start is not None:
      first_action = tf.cast(start["action"], action.dtype)[:, None]
      stoch = start["stoch"]
      state = {"deter": start["deter"], "stoch": stoch, "logits": tf.zeros(tf.shape(stoch), tf.float32)}
      dtype = self.rssm.compute_dtype
      state.update(deter=tf.cast(state["deter"], dtype), stoch=tf.cast(stoch, dtype))
    prev_action = tf.concat([first_action, action[:, :-1]], 1)
    return self.rssm.observe(embed, prev_action, data["is_first"], seed, state)

  def loss(self, data, seed, start=None):
    """The world model loss, Eq. 5 (prediction, dynamics and representation terms).

    ``L = 1.0 L_pred + 0.5 L_dyn + 0.1 L_rep`` averaged over batch and time, where
    L_pred sums the decoder's negative log-likelihoods (image MSE summed over
    pixels, symlog-MSE for vectors), the reward's twohot cross-entropy and the
    continue flag's Bernoulli loss; the KL terms are balanced with stop-gradients
    and clipped below at ``free_nats`` (free bits, Eq. 5).

    Args:
      data: A preprocessed batch (see ``DreamerAgent.preprocess``) of ``[B, T]``.
      seed: Shape ``[2]`` integer seed.
      start: The replay context's start state (see :meth:`observe`), or None.

    Returns:
      ``(loss, post, metrics)``: the scalar loss, the posterior states and a dict of
      scalar diagnostics.
    """
    post, prior = self.observe(data, seed, start)
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
