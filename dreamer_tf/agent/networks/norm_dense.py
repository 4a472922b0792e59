"""A dense layer followed by LayerNorm and an activation: the 2023 building block."""

import tensorflow as tf

keras = tf.keras


def kernel_initializer(scale: float = 1.0, distribution: str = "truncated_normal"):
  """A new variance-scaling initializer (``scale / fan_avg``), zeros for ``scale=0``.

  Each layer needs its own instance: Keras gives an unseeded initializer one
  random stream, so a shared instance would start several layers alike.
  """
  if scale == 0.0:
    return keras.initializers.Zeros()
  return keras.initializers.VarianceScaling(scale, "fan_avg", distribution)


class NormDense(keras.layers.Layer):
  """``act(LayerNorm(x @ W))``, or ``act(x @ W + b)`` without normalisation.

  Like the 2023 DreamerV3 code, the bias is dropped when a LayerNorm follows
  (its offset plays that role), and kernels have variance ``scale / fan_avg``:
  a truncated normal for hidden layers (Glorot normal for ``scale=1``), a
  uniform distribution for output layers as the 2023 code's distribution
  outputs (Glorot uniform for ``scale=1``); ``scale=0`` gives the
  zero-initialised output layers of the reward and critic heads.

  Args:
    units: Output size.
    activation: Keras activation name (``'silu'``, ``None``).
    norm: Whether to apply LayerNorm after the matmul.
    norm_eps: LayerNorm epsilon (1e-3 in the 2023 code).
    scale: Initialiser scale; 0 zero-initialises the kernel.
    distribution: ``truncated_normal`` (hidden layers) or ``uniform`` (output layers).
  """

  def __init__(
    self, units, activation="silu", norm=True, norm_eps=1e-3, scale=1.0, distribution="truncated_normal", **kwargs
  ):
    super().__init__(**kwargs)
    self.units = units
    self.activation = activation
    self.norm = norm
    self.norm_eps = norm_eps
    self.scale = scale
    self.distribution = distribution
    self.dense = keras.layers.Dense(
      units, use_bias=not norm, kernel_initializer=kernel_initializer(scale, distribution), name="dense"
    )
    self.layer_norm = keras.layers.LayerNormalization(epsilon=norm_eps, name="norm") if norm else None
    self.act = keras.activations.get(activation)

  def build(self, input_shape):
    self.dense.build((None, input_shape[-1]))
    if self.layer_norm is not None:
      self.layer_norm.build((None, self.units))
    super().build(input_shape)

  def call(self, x):
    batch_shape = tf.shape(x)[:-1]
    if x.shape.rank != 2:  # The layers are built for [N, D]; fold leading dims.
      x = tf.reshape(x, [-1, x.shape[-1]])
    x = self.dense(x)
    if self.layer_norm is not None:
      x = self.layer_norm(x)
    x = self.act(x)
    return tf.reshape(x, tf.concat([batch_shape, [self.units]], 0))

  def project(self, x, start=0, stop=None):
    """``x @ W[start:stop]``: part of the matmul, for inputs that are concatenations.

    With :meth:`finish`, ``finish(project(a, 0, n) + project(b, n))`` equals
    ``self(concat([a, b]))``, so a caller can compute the part of a large input
    that does not change inside a loop once, outside the loop.
    """
    kernel = tf.cast(self.dense.kernel[start:stop], self.compute_dtype)
    return tf.matmul(tf.cast(x, self.compute_dtype), kernel)

  def finish(self, pre_activation):
    """Bias or LayerNorm, then the activation, of a summed :meth:`project` result."""
    x = pre_activation
    if self.layer_norm is not None:
      x = self.layer_norm(x)
    else:
      x = tf.nn.bias_add(x, tf.cast(self.dense.bias, self.compute_dtype))
    return self.act(x)

  def get_config(self):
    config = super().get_config()
    config.update(
      units=self.units,
      activation=self.activation,
      norm=self.norm,
      norm_eps=self.norm_eps,
      scale=self.scale,
      distribution=self.distribution,
    )
    return config
