"""RMS normalisation over the last axis with a learned scale, computed in float32."""

import tensorflow as tf

keras = tf.keras


class RMSNorm(keras.layers.Layer):
  """``x / sqrt(mean(x^2) + eps) * scale`` over the last axis: the current generation's norm.

  The author's current code (arXiv 2301.04104v2, ``embodied/jax/nets.py:Norm`` with ``impl='rms'``)
  normalises every hidden layer this way: a learned per-channel ``scale`` (ones at first) and no
  offset (its ``shift`` belongs only to ``impl='layer'``). The statistics and the product are
  computed in float32 whatever the compute dtype; the result is cast back to the compute dtype.

  Args:
    epsilon: Added to the mean square (1e-4).
  """

  def __init__(self, epsilon=1e-4, **kwargs):
    super().__init__(**kwargs)
    self.epsilon = epsilon

  def build(self, input_shape):
    self.scale = self.add_weight(
      "scale", (input_shape[-1],), tf.float32, initializer="ones", experimental_autocast=False
    )
    super().build(input_shape)

  def call(self, x):
    x = tf.cast(x, tf.float32)
    mean_square = tf.reduce_mean(tf.square(x), -1, keepdims=True)
    x = x * (tf.math.rsqrt(mean_square + self.epsilon) * self.scale)
    return tf.cast(x, self.compute_dtype)

  def get_config(self):
    config = super().get_config()
    config.update(epsilon=self.epsilon)
    return config
