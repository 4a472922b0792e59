"""Percentile return normalisation (Sec. 3, Eq. 12)."""

import tensorflow as tf

from dreamer_tf.agent import ops


class ReturnNormalizer(tf.Module):
  """Tracks the 5th and 95th return percentiles with an EMA and scales advantages.

  ``S = max(max_scale, EMA(Per(R, 95)) - EMA(Per(R, 5)))`` with decay 0.99 and
  ``max_scale = 1``: large returns are scaled down, small ones are not scaled
  up (Eq. 12). Like the 2023 code, the EMA starts at zero and is not debiased.

  Args:
    decay: EMA decay (0.99).
    max_scale: The lower limit of S (1.0).
    perclo, perchi: The percentiles (5, 95).
  """

  def __init__(self, decay=0.99, max_scale=1.0, perclo=5.0, perchi=95.0, name="retnorm"):
    super().__init__(name=name)
    self.decay, self.max_scale, self.perclo, self.perchi = decay, max_scale, perclo, perchi
    self.low = tf.Variable(0.0, trainable=False, name="low")
    self.high = tf.Variable(0.0, trainable=False, name="high")

  def update(self, returns):
    """Updates the EMAs with a batch of returns; returns ``(offset, scale)``.

    Under a distribution strategy the percentiles of each replica's batch are
    averaged across replicas, so every replica keeps identical statistics.
    """
    low = ops.percentile(returns, self.perclo)
    high = ops.percentile(returns, self.perchi)
    ctx = tf.distribute.get_replica_context()
    if ctx is not None and ctx.num_replicas_in_sync > 1:
      low, high = ctx.all_reduce("mean", [low, high])
    self.low.assign(self.decay * self.low + (1.0 - self.decay) * low)
    self.high.assign(self.decay * self.high + (1.0 - self.decay) * high)
    return self.stats()

  def stats(self):
    """``(offset, scale)``: the low percentile EMA and S, without gradients."""
    scale = tf.maximum(self.max_scale, self.high - self.low)
    return tf.stop_gradient(tf.identity(self.low)), tf.stop_gradient(scale)
