"""The current generation's optimizer: adaptive gradient clipping, then LaProp, with a linear warm-up."""

import tensorflow as tf

from dreamer_tf.agent.update_counting_optimizer import UpdateCountingOptimizer


class LaProp(UpdateCountingOptimizer):
  """AGC -> RMS scaling -> momentum -> learning rate: the one optimizer of the current DreamerV3.

  The author's current code (arXiv 2301.04104v2; ``dreamerv3/agent.py:_make_opt`` chaining
  ``embodied/jax/opt.py:clip_by_agc``, ``scale_by_rms`` and ``scale_by_momentum``) trains the world
  model, actor and critic with one such optimizer over all their variables. For each variable ``w``
  with gradient ``g``, at the ``t``-th applied update (from 1):

  1. Adaptive gradient clipping (Brock et al. 2021), per variable with Frobenius norms over the
     whole tensor: ``g <- g / max(1, ||g|| / (agc * max(pmin, ||w||)))``.
  2. RMS scaling: ``nu <- beta_2 nu + (1 - beta_2) g^2``, ``r = g / (sqrt(nu / (1 - beta_2^t)) + eps)``.
  3. Momentum of the scaled gradient: ``mu <- beta_1 mu + (1 - beta_1) r``,
     ``u = mu / (1 - beta_1^t)``. Normalising before the momentum is LaProp (Ziyin et al. 2020),
     unlike Adam, which normalises the momentum.
  4. ``w <- w - lr_t u`` with ``lr_t = lr * min(t - 1, warmup) / warmup`` (``lr`` if ``warmup`` is
     0): optax's ``linear_schedule(0, lr, warmup)`` joined to a constant, evaluated at the count of
     updates applied before, so the first update has a learning rate of 0 (it only fills the moments)
     and ``lr`` is reached at update ``warmup + 1``.

  ``t`` counts applied updates (:class:`UpdateCountingOptimizer`): a step that a
  ``LossScaleOptimizer`` skips leaves the moments, ``t`` and the warm-up where they were, as the
  author's ``optax.apply_if_finite`` does. Slots: ``nu`` then ``mu`` for each variable, float32.

  Args:
    learning_rate: The learning rate after the warm-up (4e-5).
    agc: The clipping ratio of update norm to parameter norm (0.3); 0 disables clipping.
    pmin: The smallest parameter norm the clipping uses (1e-3), so zero-initialised variables move.
    beta_1: Decay of the momentum (0.9).
    beta_2: Decay of the squared-gradient average (0.999).
    epsilon: Added to the bias-corrected RMS (1e-20).
    warmup: Number of updates of the linear learning-rate warm-up (1000); 0 disables it.
    name: Optimizer name.
    **kwargs: Further arguments of ``keras.optimizers.Optimizer`` (e.g. ``jit_compile``).
  """

  def __init__(
    self,
    learning_rate=4e-5,
    agc=0.3,
    pmin=1e-3,
    beta_1=0.9,
    beta_2=0.999,
    epsilon=1e-20,
    warmup=1000,
    name="LaProp",
    **kwargs,
  ):
    super().__init__(name=name, **kwargs)
    if warmup < 0 or agc < 0:
      raise ValueError(f"warmup ({warmup}) and agc ({agc}) must not be negative")
    self._learning_rate = self._build_learning_rate(learning_rate)
    self.agc = agc
    self.pmin = pmin
    self.beta_1 = beta_1
    self.beta_2 = beta_2
    self.epsilon = epsilon
    self.warmup = int(warmup)

  def build(self, var_list):
    """Creates the slots ``nu`` (squared-gradient average) and ``mu`` (momentum) of each variable."""
    super().build(var_list)
    if getattr(self, "_built", False):
      return
    self._built = True
    self._nus = []
    self._mus = []
    for var in var_list:
      self._nus.append(self.add_variable_from_reference(model_variable=var, variable_name="nu"))
      self._mus.append(self.add_variable_from_reference(model_variable=var, variable_name="mu"))

  def learning_rate_at(self, step):
    """``lr_t`` of the ``step``-th applied update (1-based), float32."""
    lr = tf.cast(self.learning_rate, tf.float32)
    if not self.warmup:
      return lr
    done = tf.cast(tf.minimum(tf.cast(step, tf.int64) - 1, self.warmup), tf.float32)
    return lr * done / float(self.warmup)

  def clip_by_agc(self, gradient, variable):
    """Step 1: ``gradient`` scaled down so that its norm is at most ``agc * max(pmin, ||variable||)``."""
    if not self.agc:
      return gradient
    grad_norm = tf.norm(tf.reshape(gradient, [-1]))
    param_norm = tf.norm(tf.reshape(tf.cast(variable, gradient.dtype), [-1]))
    upper = self.agc * tf.maximum(tf.cast(self.pmin, gradient.dtype), param_norm)
    return gradient * (1.0 / tf.maximum(tf.cast(1.0, gradient.dtype), grad_norm / upper))

  def update_step(self, gradient, variable):
    """Moves ``variable`` by ``-lr_t * mu_hat`` (steps 1-4 above)."""
    dtype = variable.dtype
    gradient = tf.cast(tf.convert_to_tensor(gradient), dtype)  # IndexedSlices -> dense
    step = self._step()
    t = tf.cast(step, dtype)
    beta_1 = tf.cast(self.beta_1, dtype)
    beta_2 = tf.cast(self.beta_2, dtype)
    index = self._index_dict[self._var_key(variable)]
    nu, mu = self._nus[index], self._mus[index]
    gradient = self.clip_by_agc(gradient, variable)
    nu.assign(beta_2 * nu + (1 - beta_2) * tf.square(gradient))
    nu_hat = nu / (1 - tf.pow(beta_2, t))
    scaled = gradient / (tf.sqrt(nu_hat) + tf.cast(self.epsilon, dtype))
    mu.assign(beta_1 * mu + (1 - beta_1) * scaled)
    mu_hat = mu / (1 - tf.pow(beta_1, t))
    variable.assign_sub(tf.cast(self.learning_rate_at(step), dtype) * mu_hat)

  def get_config(self):
    config = super().get_config()
    config.update(
      {
        "learning_rate": self._serialize_hyperparameter(self._learning_rate),
        "agc": self.agc,
        "pmin": self.pmin,
        "beta_1": self.beta_1,
        "beta_2": self.beta_2,
        "epsilon": self.epsilon,
        "warmup": self.warmup,
      }
    )
    return config
