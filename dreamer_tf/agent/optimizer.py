"""Adam with epsilon added after the bias correction, as in the 2023 DreamerV3 code."""

import tensorflow as tf

from dreamer_tf.agent.update_counting_optimizer import UpdateCountingOptimizer


class Adam(UpdateCountingOptimizer):
  """Adam (Kingma & Ba 2015) in the form of the 2023 DreamerV3 code (arXiv 2301.04104v1).

  The update at step ``t`` (from 1) is ``lr * m_hat / (sqrt(v_hat) + epsilon)`` with the
  bias-corrected moments ``m_hat = m / (1 - beta_1^t)`` and ``v_hat = v / (1 - beta_2^t)``:
  optax's ``scale_by_adam`` as used by the author's code (``jaxutils.Optimizer``). Keras' own
  ``Adam`` adds ``epsilon`` to ``sqrt(v)`` before the bias correction, which makes the effective
  epsilon ``1 / sqrt(1 - beta_2^t)`` times larger (31.6x at update 1, 3.2x at update 100): that
  matters for the actor and critic's ``epsilon = 1e-5`` (Table W.1 of the paper).

  ``t`` counts the applied updates: a step that a ``LossScaleOptimizer`` skips for non-finite
  gradients leaves the moments and ``t`` as they were (it still advances ``iterations``), as optax's
  ``apply_if_finite`` does in the reference under float16. That count is a checkpointed variable
  (``count``) besides Keras ``Adam``'s slots (``m`` then ``v`` for each variable), so a checkpoint
  written with Keras' Adam lacks it and the ``Checkpointer`` refuses it as written by another
  configuration.
  Gradient clipping is done by the caller (``DreamerAgent``, global norm), as in the reference.

  Args:
    learning_rate: Step size (float or a Keras schedule).
    beta_1: Decay of the first moment.
    beta_2: Decay of the second moment.
    epsilon: Added to ``sqrt(v_hat)`` (after the bias correction).
    name: Optimizer name.
    **kwargs: Further arguments of ``keras.optimizers.Optimizer`` (e.g. ``jit_compile``).
  """

  def __init__(self, learning_rate=1e-4, beta_1=0.9, beta_2=0.999, epsilon=1e-8, name="Adam", **kwargs):
    super().__init__(name=name, **kwargs)
    self._learning_rate = self._build_learning_rate(learning_rate)
    self.beta_1 = beta_1
    self.beta_2 = beta_2
    self.epsilon = epsilon

  def build(self, var_list):
    """Creates the first- and second-moment slots ``m`` and ``v`` of each variable."""
    super().build(var_list)
    if getattr(self, "_built", False):
      return
    self._built = True
    self._momentums = []
    self._velocities = []
    for var in var_list:
      self._momentums.append(self.add_variable_from_reference(model_variable=var, variable_name="m"))
      self._velocities.append(self.add_variable_from_reference(model_variable=var, variable_name="v"))

  def update_step(self, gradient, variable):
    """Moves ``variable`` by ``-lr * m_hat / (sqrt(v_hat) + epsilon)``."""
    dtype = variable.dtype
    gradient = tf.cast(tf.convert_to_tensor(gradient), dtype)  # IndexedSlices -> dense
    lr = tf.cast(self.learning_rate, dtype)
    step = tf.cast(self._step(), dtype)
    beta_1 = tf.cast(self.beta_1, dtype)
    beta_2 = tf.cast(self.beta_2, dtype)
    index = self._index_dict[self._var_key(variable)]
    m, v = self._momentums[index], self._velocities[index]
    m.assign_add((gradient - m) * (1 - beta_1))
    v.assign_add((tf.square(gradient) - v) * (1 - beta_2))
    m_hat = m / (1 - tf.pow(beta_1, step))
    v_hat = v / (1 - tf.pow(beta_2, step))
    variable.assign_sub(lr * m_hat / (tf.sqrt(v_hat) + tf.cast(self.epsilon, dtype)))

  def get_config(self):
    config = super().get_config()
    config.update(
      {
        "learning_rate": self._serialize_hyperparameter(self._learning_rate),
        "beta_1": self.beta_1,
        "beta_2": self.beta_2,
        "epsilon": self.epsilon,
      }
    )
    return config
