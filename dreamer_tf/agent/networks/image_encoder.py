"""The CNN image encoder of the 2023 version."""

import math

import tensorflow as tf

from dreamer_tf.agent.networks.norm_dense import kernel_initializer

keras = tf.keras


class ImageEncoder(keras.layers.Layer):
  """Strided convolutions from the image size down to ``minres``, then flatten.

  Each stage is Conv(kernel 4, stride 2, no bias) -> LayerNorm over channels ->
  SiLU, with ``depth * 2**i`` channels at stage ``i`` (24/32/48/64/96 for
  XS..XL). A 64x64 image gives 4 stages and a 4x4 map. Inputs are uint8 or
  float images in [0, 255]; they are scaled to ``x / 255 - 0.5``.

  Args:
    depth: The CNN multiplier of the size preset.
    minres: The resolution at which down-sampling stops.
    norm_eps: LayerNorm epsilon.
  """

  def __init__(self, depth, minres=4, norm_eps=1e-3, **kwargs):
    super().__init__(**kwargs)
    self.depth = depth
    self.minres = minres
    self.norm_eps = norm_eps
    self.convs = []
    self.norms = []

  def build(self, input_shape):
    stages = int(math.log2(input_shape[-2]) - math.log2(self.minres))
    if stages < 1:
      raise ValueError(f"image of width {input_shape[-2]} is too small for minres {self.minres}")
    shape = tuple(input_shape)
    for i in range(stages):
      conv = keras.layers.Conv2D(
        self.depth * 2**i, 4, 2, "same", use_bias=False, kernel_initializer=kernel_initializer(), name=f"conv{i}"
      )
      conv.build(shape)
      shape = (shape[0], (shape[1] + 1) // 2, (shape[2] + 1) // 2, self.depth * 2**i)
      norm = keras.layers.LayerNormalization(epsilon=self.norm_eps, name=f"norm{i}")
      norm.build(shape)
      self.convs.append(conv)
      self.norms.append(norm)
    self.output_size = shape[1] * shape[2] * shape[3]
    super().build(input_shape)

  def call(self, image):
    x, batch_shape = flat_images(image, self.compute_dtype)
    for conv, norm in zip(self.convs, self.norms):
      x = tf.nn.silu(norm(conv(x)))
    return tf.reshape(x, tf.concat([batch_shape, [self.output_size]], 0))

  def get_config(self):
    config = super().get_config()
    config.update(depth=self.depth, minres=self.minres, norm_eps=self.norm_eps)
    return config


def flat_images(image, dtype):
  """uint8 images ``[..., H, W, C]`` scaled to [-0.5, 0.5] in ``dtype``, leading axes flattened.

  Returns:
    ``(x_NHWC, batch_shape)``: the images as one batch, and the leading shape to restore.
  """
  batch_shape = tf.shape(image)[:-3]
  x = tf.cast(image, dtype) / 255.0 - 0.5
  return tf.reshape(x, tf.concat([[-1], tf.shape(image)[-3:]], 0)), batch_shape
