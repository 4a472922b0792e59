"""The current generation's CNN image decoder: block spatial projection, nearest upsampling, sigmoid."""

import math

import tensorflow as tf

from dreamer_tf.agent.networks.block_linear import BlockLinear
from dreamer_tf.agent.networks.rms_norm import RMSNorm
from dreamer_tf.agent.networks.rms_norm_dense import RMSNormDense
from dreamer_tf.agent.networks.truncated_normal_fan_in import TruncatedNormalFanIn

keras = tf.keras


class UpsamplingImageDecoder(keras.layers.Layer):
  """Maps the model state ``{deter, stoch}`` to an image in [0, 1].

  The author's current code (arXiv 2301.04104v2, ``dreamerv3/rssm.py:Decoder`` with ``bspace: 8``,
  ``strided: False``, ``outer: False``):

  1. Spatial projection to ``minres x minres x C`` with ``C = depth * mults[-1]`` and
     ``minres = H / 2**len(mults)``: ``x0`` = :class:`BlockLinear` (``bspace`` blocks) of ``deter``,
     each block filling ``C / bspace`` of the channels of every pixel
     (``(g h w c) -> h w (g c)``); ``x1`` = Dense(``2 * units``) + RMSNorm + SiLU of the flat
     ``stoch``, then Dense to the same map; ``x = SiLU(RMSNorm(x0 + x1))``.
  2. For the stages ``len(mults) - 2 .. 0``: nearest-neighbour upsampling x2 -> Conv(kernel,
     ``depth * mults[i]``) -> RMSNorm -> SiLU.
  3. Upsampling x2 -> Conv(kernel, ``C_out``, initialiser scale ``outscale``) -> sigmoid.

  All layers have biases and :class:`TruncatedNormalFanIn` kernels. The 2023
  :class:`~dreamer_tf.agent.networks.image_decoder.ImageDecoder` uses transposed convolutions from
  the concatenated features instead. The output ``[..., H, W, C_out]`` is in the compute dtype.

  Args:
    shape: The output image shape ``(H, W, C_out)``.
    depth: The CNN multiplier of the size preset.
    units: The size preset's MLP width (``x1`` has ``2 * units``).
    mults: Channel multipliers of the encoder's stages.
    kernel: Convolution kernel size (5).
    bspace: Blocks of the spatial projection of ``deter`` (8).
    outscale: Initialiser scale of the output convolution (1.0).
    norm_eps: RMSNorm epsilon.
  """

  def __init__(
    self, shape, depth, units, mults=(2, 3, 4, 4), kernel=5, bspace=8, outscale=1.0, norm_eps=1e-4, **kwargs
  ):
    super().__init__(**kwargs)
    self.shape = tuple(int(d) for d in shape)
    self.depth, self.units, self.mults, self.kernel = depth, units, tuple(mults), kernel
    self.bspace, self.outscale, self.norm_eps = bspace, outscale, norm_eps
    factor = 2 ** len(self.mults)
    self.minres = (self.shape[0] // factor, self.shape[1] // factor)
    self.space_depth = depth * self.mults[-1]
    if self.minres[0] * factor != self.shape[0] or self.minres[1] * factor != self.shape[1]:
      raise ValueError(f"image size {self.shape[:2]} is not a multiple of {factor}")
    if bspace < 1 or self.space_depth % bspace:
      raise ValueError(f"channels {self.space_depth} are not a multiple of bspace ({bspace})")
    self.space_size = self.minres[0] * self.minres[1] * self.space_depth
    self.deter_space = BlockLinear(self.space_size, bspace, name="sp0")
    self.stoch_hidden = RMSNormDense(2 * units, "silu", norm_eps, name="sp1")
    self.stoch_space = keras.layers.Dense(self.space_size, kernel_initializer=TruncatedNormalFanIn(), name="sp2")
    self.space_norm = RMSNorm(norm_eps, name="spnorm")
    conv = lambda filters, name, scale=1.0: keras.layers.Conv2D(
      filters, kernel, 1, "same", kernel_initializer=TruncatedNormalFanIn(scale), name=name
    )
    stages = list(reversed(range(len(self.mults) - 1)))
    self.convs = [conv(depth * self.mults[i], f"conv{i}") for i in stages]
    self.norms = [RMSNorm(norm_eps, name=f"conv{i}norm") for i in stages]
    self.out = conv(self.shape[-1], "imgout", outscale)

  def build_for(self, deter_size: int, stoch_size: int):
    """Creates all variables for ``deter_size`` deterministic and ``stoch_size`` flat stochastic features."""
    self.deter_space.build((None, deter_size))
    self.stoch_hidden.build((None, stoch_size))
    self.stoch_space.build((None, 2 * self.units))
    self.space_norm.build((None, self.space_depth))
    h, w, channels = *self.minres, self.space_depth
    for conv, norm in zip(self.convs, self.norms):
      h, w = 2 * h, 2 * w
      conv.build((None, h, w, channels))
      channels = conv.filters
      norm.build((None, h, w, channels))
    self.out.build((None, 2 * h, 2 * w, channels))
    self.built = True

  def build(self, input_shape):
    deter_shape = input_shape["deter"]
    stoch_shape = input_shape["stoch"][len(deter_shape) - 1 :]
    self.build_for(int(deter_shape[-1]), math.prod(int(d) for d in stoch_shape))

  def call(self, state):
    """The image ``[..., H, W, C_out]`` from ``state['deter'] [..., deter]`` and ``state['stoch'] [..., ...]``."""
    deter = tf.cast(state["deter"], self.compute_dtype)
    batch_shape = tf.shape(deter)[:-1]
    deter = tf.reshape(deter, [-1, deter.shape[-1]])
    stoch = tf.reshape(tf.cast(state["stoch"], self.compute_dtype), [tf.shape(deter)[0], -1])
    h, w = self.minres
    groups, group_depth = self.bspace, self.space_depth // self.bspace
    x0 = tf.reshape(self.deter_space(deter), [-1, groups, h, w, group_depth])
    x0 = tf.reshape(tf.transpose(x0, [0, 2, 3, 1, 4]), [-1, h, w, self.space_depth])
    x1 = tf.reshape(self.stoch_space(self.stoch_hidden(stoch)), [-1, h, w, self.space_depth])
    x = tf.nn.silu(self.space_norm(x0 + x1))
    for conv, norm in zip(self.convs, self.norms):
      x = tf.nn.silu(norm(conv(self._upsample(x))))
    x = tf.sigmoid(self.out(self._upsample(x)))
    return tf.reshape(x, tf.concat([batch_shape, self.shape], 0))

  @staticmethod
  def _upsample(x):
    """Nearest-neighbour upsampling x2 of ``[N, H, W, C]``."""
    return tf.repeat(tf.repeat(x, 2, axis=1), 2, axis=2)

  def get_config(self):
    config = super().get_config()
    config.update(
      shape=self.shape,
      depth=self.depth,
      units=self.units,
      mults=self.mults,
      kernel=self.kernel,
      bspace=self.bspace,
      outscale=self.outscale,
      norm_eps=self.norm_eps,
    )
    return config
