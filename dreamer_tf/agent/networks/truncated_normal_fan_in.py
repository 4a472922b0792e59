"""The current generation's weight initialiser: a truncated normal scaled by the fan-in."""

import math

import tensorflow as tf

keras = tf.keras

# The author's factor (embodied/jax/nets.py:Initializer): 1 / std of a unit normal truncated to [-2, 2]
# (0.87962566...), rounded to 4 decimals, so that the weights' std is about sqrt(1 / fan_in).
TRUNCATED_NORMAL_STD_CORRECTION = 1.1368


def fan_in(shape) -> int:
  """The input width a kernel of ``shape`` sums over: every dimension but the last.

  ``[in, out]`` for dense kernels, ``[kh, kw, in, out]`` for convolutions (``kh * kw * in``) and
  ``[blocks, in / blocks, out / blocks]`` for block-diagonal kernels, whose fan-in is the full input
  width ``in``, as the author's ``Initializer.compute_fans``; 1 for vectors and scalars.
  """
  shape = tuple(int(d) for d in shape)
  return math.prod(shape[:-1]) if len(shape) >= 2 else 1


class TruncatedNormalFanIn(keras.initializers.Initializer):
  """``scale * 1.1368 * sqrt(1 / fan_in) * n`` with ``n`` a unit normal truncated to [-2, 2].

  The ``trunc_normal_in`` initialiser of the author's current code (arXiv 2301.04104v2,
  ``embodied/jax/nets.py:Initializer`` with ``winit: trunc_normal_in``), where ``scale`` is a
  layer's ``outscale`` (0 gives zeros: the reward and value outputs). The 2023 layers use
  :func:`~dreamer_tf.agent.networks.norm_dense.kernel_initializer` (fan average) instead.
  Each layer needs its own instance (an unseeded Keras initializer has one random stream).

  Args:
    scale: Multiplies the weights (the author's ``outscale``).
    seed: Optional integer seed.
  """

  def __init__(self, scale=1.0, seed=None):
    self.scale = float(scale)
    self.seed = seed
    self._unit = keras.initializers.TruncatedNormal(0.0, 1.0, seed=seed)  # truncated at 2 std

  def __call__(self, shape, dtype=None, **kwargs):
    dtype = tf.as_dtype(dtype or keras.backend.floatx())
    if self.scale == 0.0:
      return tf.zeros(shape, dtype)
    std = self.scale * TRUNCATED_NORMAL_STD_CORRECTION * math.sqrt(1.0 / fan_in(shape))
    return tf.cast(self._unit(shape, tf.float32, **kwargs) * std, dtype)

  def get_config(self):
    return {"scale": self.scale, "seed": self.seed}
