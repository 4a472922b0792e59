"""The Recurrent State-Space Model of the 2023 version (Sec. 2, Eq. 3)."""

import tensorflow as tf

from dreamer_tf.agent import distributions
from dreamer_tf.agent.networks.norm_dense import NormDense, kernel_initializer

keras = tf.keras


class RSSM(keras.layers.Layer):
  """Recurrent state-space model with a LayerNorm GRU and categorical latents.

  The model state is a dict with ``deter`` (the GRU state h_t, ``[B, deter]``),
  ``stoch`` (one-hot samples z_t, ``[B, stoch, classes]``) and ``logits`` (their
  unimix log-probabilities). The components of Eq. 3:

  * sequence model ``h_t = f(h_{t-1}, z_{t-1}, a_{t-1})``: ``img_in`` then a GRU
    whose gates come from one LayerNorm'd dense layer over ``[h, x]``;
  * dynamics predictor ``p(z_t | h_t)``: ``img_out`` -> ``img_stats``;
  * encoder (posterior) ``q(z_t | h_t, x_t)``: ``obs_out`` -> ``obs_stats`` over
    ``[h_t, embed_t]``.

  Latents mix 1% uniform into their probabilities and sample with
  straight-through gradients. On ``is_first`` the state and previous action
  are reset to the learned initial state ``h_0 = tanh(w)``,
  ``z_0 = mode(p(z | h_0))`` (or zeros with ``initial='zeros'``).

  Args:
    deter: GRU units.
    units: Hidden units of the dense layers.
    stoch: Number of categorical latents (32).
    classes: Classes per latent (32).
    unimix: Uniform mixture (0.01).
    initial: ``'learned'`` or ``'zeros'``.
    action_clip: Actions are scaled down to at most this magnitude (0 disables).
    norm_eps: LayerNorm epsilon.
  """

  def __init__(
    self,
    deter,
    units,
    stoch=32,
    classes=32,
    unimix=0.01,
    initial="learned",
    action_clip=1.0,
    norm_eps=1e-3,
    **kwargs,
  ):
    super().__init__(**kwargs)
    self.deter, self.units, self.stoch, self.classes = deter, units, stoch, classes
    self.unimix, self.initial_kind, self.action_clip, self.norm_eps = unimix, initial, action_clip, norm_eps
    self._create_layers()

  def _create_layers(self):
    """Creates the 2023 layers; a subclass with other layers replaces this."""
    deter, units, stoch, classes, norm_eps = self.deter, self.units, self.stoch, self.classes, self.norm_eps
    self.img_in = NormDense(units, "silu", True, norm_eps, name="img_in")
    self.gru = NormDense(3 * deter, None, True, norm_eps, name="gru")
    self.img_out = NormDense(units, "silu", True, norm_eps, name="img_out")
    self.img_stats = keras.layers.Dense(
      stoch * classes, kernel_initializer=kernel_initializer(1.0, "uniform"), name="img_stats"
    )
    self.obs_out = NormDense(units, "silu", True, norm_eps, name="obs_out")
    self.obs_stats = keras.layers.Dense(
      stoch * classes, kernel_initializer=kernel_initializer(1.0, "uniform"), name="obs_stats"
    )

  def build_for(self, embed_size: int, action_size: int):
    """Creates all variables for the given embedding and action sizes."""
    flat = self.stoch * self.classes
    self.img_in.build((None, flat + action_size))
    self.gru.build((None, self.deter + self.units))
    self.img_out.build((None, self.deter))
    self.img_stats.build((None, self.units))
    self.obs_out.build((None, self.deter + embed_size))
    self.obs_stats.build((None, self.units))
    if self.initial_kind == "learned":
      self.initial_deter = self.add_weight("initial", (self.deter,), initializer="zeros", dtype=tf.float32)
    self.built = True

  @property
  def feat_size(self):
    return self.deter + self.stoch * self.classes

  def get_feat(self, state):
    """Model features ``concat(h, flat z)`` fed to the heads."""
    stoch = tf.reshape(state["stoch"], tf.concat([tf.shape(state["stoch"])[:-2], [self.stoch * self.classes]], 0))
    return tf.concat([state["deter"], tf.cast(stoch, state["deter"].dtype)], -1)

  def get_dist(self, state_or_logits):
    logits = state_or_logits["logits"] if isinstance(state_or_logits, dict) else state_or_logits
    return distributions.OneHotCategorical(logits, event_dims=1)

  def kl_losses(self, post, prior, free_nats):
    """The dynamics and representation losses of Eq. 5 (KL balancing with free bits).

    ``dyn = max(free_nats, KL(sg(post) || prior))``, ``rep = max(free_nats, KL(post || sg(prior)))``,
    each KL summed over the latents of every ``[B, T]`` step; the same in both generations (the
    author's ``dreamerv3/rssm.py:RSSM.loss``), only their scales differ (2023: dyn 0.5, current: 1.0).

    Returns:
      ``(dyn, rep, kl_dyn, kl_rep)``: the clipped losses and the unclipped KLs.
    """
    sg = tf.stop_gradient
    kl_dyn = self.get_dist(sg(post["logits"])).kl(self.get_dist(prior))
    kl_rep = self.get_dist(post).kl(self.get_dist(sg(prior["logits"])))
    return tf.maximum(kl_dyn, free_nats), tf.maximum(kl_rep, free_nats), kl_dyn, kl_rep

  def _stats(self, layer, x):
    logits = tf.cast(layer(x), tf.float32)
    logits = tf.reshape(logits, tf.concat([tf.shape(logits)[:-1], [self.stoch, self.classes]], 0))
    return distributions.OneHotCategorical(logits, self.unimix, event_dims=1)

  def initial(self, batch_size):
    """The initial state for ``batch_size`` sequences."""
    dtype = self.compute_dtype
    if self.initial_kind == "zeros":
      return dict(
        deter=tf.zeros([batch_size, self.deter], dtype),
        stoch=tf.zeros([batch_size, self.stoch, self.classes], dtype),
        logits=tf.zeros([batch_size, self.stoch, self.classes], tf.float32),
      )
    deter = tf.tanh(tf.cast(self.initial_deter, dtype))[None]
    dist = self._stats(self.img_stats, self.img_out(deter))
    stoch = tf.cast(tf.stop_gradient(dist.mode()), dtype)
    tile = lambda x: tf.broadcast_to(x, tf.concat([[batch_size], tf.shape(x)[1:]], 0))  # XLA-friendly
    return dict(deter=tile(deter), stoch=tile(stoch), logits=tile(dist.logits))

  def _reset(self, state, action, is_first, init):
    """Replaces state and action by the initial state (``init``, batch 1) where ``is_first``."""
    first = tf.cast(is_first, tf.bool)
    where = lambda x, y: tf.where(tf.reshape(first, [-1] + [1] * (x.shape.rank - 1)), y, x)
    state = {k: where(state[k], tf.cast(init[k], state[k].dtype)) for k in state}
    return state, where(action, tf.zeros_like(action))

  def _clip_action(self, action):
    if not self.action_clip:
      return action
    return action * tf.stop_gradient(self.action_clip / tf.maximum(self.action_clip, tf.abs(action)))

  def img_step(self, prev_state, prev_action, seed, sample=True):
    """One step of the prior: sequence model and dynamics predictor.

    With ``sample=False`` the prior is not sampled (filtering needs only its logits)
    and ``stoch`` is omitted from the result.
    """
    dtype = self.compute_dtype
    prev_action = tf.cast(self._clip_action(tf.cast(prev_action, tf.float32)), dtype)
    prev_stoch = tf.reshape(tf.cast(prev_state["stoch"], dtype), [-1, self.stoch * self.classes])
    x = self.img_in(tf.concat([prev_stoch, prev_action], -1))
    deter = self._gru(x, tf.cast(prev_state["deter"], dtype))
    dist = self._stats(self.img_stats, self.img_out(deter))
    if not sample:
      return dict(deter=deter, logits=dist.logits)
    stoch = tf.cast(dist.sample(seed), dtype)
    return dict(deter=deter, stoch=stoch, logits=dist.logits)

  def _gru(self, x, deter):
    parts = self.gru(tf.concat([deter, x], -1))
    reset, cand, update = tf.split(parts, 3, -1)
    reset = tf.sigmoid(reset)
    cand = tf.tanh(reset * cand)
    update = tf.sigmoid(update - 1.0)
    return update * cand + (1.0 - update) * deter

  def obs_step(self, prev_state, prev_action, embed, is_first, seed):
    """One filtering step: returns ``(posterior, prior)`` states (the prior without ``stoch``)."""
    return self._obs_step(prev_state, prev_action, self.embed_projection(embed), is_first, seed, self.initial(1))

  def embed_projection(self, embed):
    """The embedding's share of the posterior layer's matmul (computed once per sequence)."""
    return self.obs_out.project(embed, self.deter)

  def _obs_step(self, prev_state, prev_action, embed_proj, is_first, seed, init):
    prev_state = {"deter": prev_state["deter"], "stoch": prev_state["stoch"]}
    prev_state, prev_action = self._reset(prev_state, tf.cast(prev_action, tf.float32), is_first, init)
    prior = self.img_step(prev_state, prev_action, None, sample=False)
    dist = self._posterior(prior["deter"], embed_proj)
    stoch = tf.cast(dist.sample(seed), self.compute_dtype)
    post = dict(deter=prior["deter"], stoch=stoch, logits=dist.logits)
    return post, prior

  def _posterior(self, deter, embed_proj):
    """``q(z_t | h_t, x_t)`` from ``deter`` and the :meth:`embed_projection` of the embedding."""
    x = self.obs_out.finish(self.obs_out.project(deter, 0, self.deter) + embed_proj)
    return self._stats(self.obs_stats, x)

  def observe(self, embed_BT, prev_action_BT, is_first_BT, seed, state=None):
    """Filters a batch of sequences with ``tf.scan`` over time.

    The embedding's part of the posterior layer is one matmul over all ``B x T``
    steps before the loop, and the initial state is computed once; the loop
    computes only what depends on the state.

    Args:
      embed_BT: Encoder outputs ``[B, T, E]``.
      prev_action_BT: The action before each step ``[B, T, A]``.
      is_first_BT: Episode starts ``[B, T]``.
      seed: Shape ``[2]`` integer seed.
      state: The state before the first step (default: initial).

    Returns:
      ``(post, prior)`` dicts of ``[B, T, ...]`` tensors; the prior has ``deter``
      and ``logits``.
    """
    batch = tf.shape(embed_BT)[0]
    length = tf.shape(embed_BT)[1]
    init = self.initial(1)
    if state is None:
      state = {k: tf.broadcast_to(v, tf.concat([[batch], tf.shape(v)[1:]], 0)) for k, v in init.items()}
    seeds = tf.random.experimental.stateless_split(seed, length)
    swap = lambda x: tf.transpose(x, [1, 0] + list(range(2, x.shape.rank)))
    embed_TB = swap(embed_BT)
    proj_TB = tf.reshape(
      self.embed_projection(tf.reshape(embed_TB, [-1, embed_TB.shape[-1]])), [length, batch, self.units]
    )
    inputs = (proj_TB, swap(prev_action_BT), swap(is_first_BT), seeds)

    def step(carry, inp):
      post, _ = carry
      proj, action, first, step_seed = inp
      return self._obs_step(post, action, proj, first, step_seed, init)

    empty_prior = {"deter": tf.zeros_like(state["deter"]), "logits": tf.zeros_like(state["logits"])}
    post, prior = tf.scan(step, inputs, initializer=(state, empty_prior))
    return tf.nest.map_structure(swap, post), tf.nest.map_structure(swap, prior)

  def imagine(self, policy_fn, start, horizon, seed):
    """Rolls out the prior from ``start`` for ``horizon`` steps with ``tf.scan``.

    Args:
      policy_fn: ``policy_fn(state, seed) -> action`` (``[N, A]``).
      start: A state dict of ``[N, ...]`` tensors.
      horizon: Number of imagined steps H.
      seed: Shape ``[2]`` integer seed.

    Returns:
      A dict of ``[H + 1, N, ...]`` tensors (time-major, index 0 is ``start``)
      with the state keys and ``action`` (the action taken in each state).
    """
    seeds = tf.random.experimental.stateless_split(seed, 2 * horizon + 1)
    first_action = policy_fn(start, seeds[0])
    step_seeds = tf.reshape(seeds[1:], [horizon, 2, 2])

    def step(prev, step_seed):
      state = self.img_step(prev, prev["action"], step_seed[0])
      return {**state, "action": policy_fn(state, step_seed[1])}

    init = {**start, "action": first_action}
    traj = tf.scan(step, step_seeds, initializer=init)
    return {k: tf.concat([init[k][None], traj[k]], 0) for k in init}

  def get_config(self):
    config = super().get_config()
    config.update(
      deter=self.deter,
      units=self.units,
      stoch=self.stoch,
      classes=self.classes,
      unimix=self.unimix,
      initial=self.initial_kind,
      action_clip=self.action_clip,
      norm_eps=self.norm_eps,
    )
    return config
