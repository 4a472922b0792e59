"""A dense layer with a block-diagonal kernel."""

import tensorflow as tf

from dreamer_tf.agent.networks.truncated_normal_fan_in import TruncatedNormalFanIn

keras = tf.keras


class BlockLinear(keras.layers.Layer):
  """``blocks`` independent dense maps on equal slices of the input, concatenated, plus a bias.

  The input ``[..., in]`` is split into ``blocks`` slices of ``in / blocks`` features; slice ``k``
  is mapped by kernel ``k`` (``[in / blocks, units / blocks]``) to output slice ``k``. This equals a
  dense layer whose ``[in, units]`` kernel is block-diagonal, with ``blocks`` times fewer weights.
  The author's current code (arXiv 2301.04104v2, ``embodied/jax/nets.py:BlockLinear``) uses it in
  the block GRU of the RSSM and in the image decoder's spatial projection. The kernel
  ``[blocks, in / blocks, units / blocks]`` starts as :class:`TruncatedNormalFanIn` with the fan-in
  over the full input width ``in``; the bias (``[units]``) starts at zero.

  Args:
    units: Output width, divisible by ``blocks``.
    blocks: Number of blocks.
    outscale: Scale of the kernel initialiser.
  """

  def __init__(self, units, blocks, outscale=1.0, **kwargs):
    super().__init__(**kwargs)
    if blocks < 1 or units % blocks:
      raise ValueError(f"units ({units}) must be a multiple of blocks ({blocks})")
    self.units = units
    self.blocks = blocks
    self.outscale = outscale

  def build(self, input_shape):
    width = int(input_shape[-1])
    if width % self.blocks:
      raise ValueError(f"input width {width} is not a multiple of blocks ({self.blocks})")
    shape = (self.blocks, width // self.blocks, self.units // self.blocks)
    self.kernel = self.add_weight("kernel", shape, initializer=TruncatedNormalFanIn(self.outscale))
    self.bias = self.add_weight("bias", (self.units,), initializer="zeros")
    super().build(input_shape)

  def call(self, x):
    batch_shape = tf.shape(x)[:-1]
    x = tf.reshape(x, [-1, self.blocks, self.kernel.shape[1]])
    x = tf.einsum("nki,kio->nko", x, self.kernel)
    x = tf.reshape(x, [-1, self.units]) + self.bias
    return tf.reshape(x, tf.concat([batch_shape, [self.units]], 0))

  def get_config(self):
    config = super().get_config()
    config.update(units=self.units, blocks=self.blocks, outscale=self.outscale)
    return config
