"""The current generation's CNN image encoder: stride-1 convolutions and 2x2 max-pooling."""

import tensorflow as tf

from dreamer_tf.agent.networks.image_encoder import flat_images
from dreamer_tf.agent.networks.rms_norm import RMSNorm
from dreamer_tf.agent.networks.truncated_normal_fan_in import TruncatedNormalFanIn

keras = tf.keras


class PoolingImageEncoder(keras.layers.Layer):
  """``len(mults)`` x [Conv(kernel, stride 1, bias) -> 2x2 max-pool -> RMSNorm -> SiLU], then flatten.

  The author's current code (arXiv 2301.04104v2, ``dreamerv3/rssm.py:Encoder`` with
  ``strided: False``, ``outer: False``): stage ``i`` has ``depth * mults[i]`` channels (128, 192,
  256, 256 at size200m) and halves the resolution by max-pooling, so a 64x64 image ends at 4x4. The
  2023 :class:`~dreamer_tf.agent.networks.image_encoder.ImageEncoder` uses strided convolutions
  and LayerNorm instead. Inputs are uint8 (or float) images ``[..., H, W, C]`` in [0, 255], scaled
  to ``x / 255 - 0.5``; the output is ``[..., output_size]`` in the compute dtype.

  Args:
    depth: The CNN multiplier of the size preset.
    mults: Channel multipliers of the stages.
    kernel: Convolution kernel size (5).
    norm_eps: RMSNorm epsilon.
  """

  def __init__(self, depth, mults=(2, 3, 4, 4), kernel=5, norm_eps=1e-4, **kwargs):
    super().__init__(**kwargs)
    self.depth = depth
    self.mults = tuple(mults)
    self.kernel = kernel
    self.norm_eps = norm_eps
    self.convs = [
      keras.layers.Conv2D(depth * m, kernel, 1, "same", kernel_initializer=TruncatedNormalFanIn(), name=f"cnn{i}")
      for i, m in enumerate(self.mults)
    ]
    self.norms = [RMSNorm(norm_eps, name=f"cnn{i}norm") for i in range(len(self.mults))]

  def build(self, input_shape):
    h, w, channels = (int(d) for d in input_shape[-3:])
    if h >> len(self.mults) < 1 or w >> len(self.mults) < 1:
      raise ValueError(f"a {h}x{w} image is too small for {len(self.mults)} pooling stages")
    for conv, norm in zip(self.convs, self.norms):
      conv.build((None, h, w, channels))
      h, w, channels = h // 2, w // 2, conv.filters
      norm.build((None, h, w, channels))
    self.output_size = h * w * channels
    super().build(input_shape)

  def call(self, image):
    x, batch_shape = flat_images(image, self.compute_dtype)
    for conv, norm in zip(self.convs, self.norms):
      x = tf.nn.max_pool2d(conv(x), 2, 2, "VALID")
      x = tf.nn.silu(norm(x))
    return tf.reshape(x, tf.concat([batch_shape, [self.output_size]], 0))

  def get_config(self):
    config = super().get_config()
    config.update(depth=self.depth, mults=self.mults, kernel=self.kernel, norm_eps=self.norm_eps)
    return config
