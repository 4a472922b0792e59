"""A Keras optimizer base that counts the updates it applies (the t of bias corrections and schedules)."""

import tensorflow as tf

keras = tf.keras


class UpdateCountingOptimizer(keras.optimizers.Optimizer):
  """Keras' optimizer plus ``count``, the number of updates actually applied.

  The author's code keeps its step counts inside the optax state, and under float16 wraps the
  chain in ``optax.apply_if_finite``, so a skipped step leaves them as they were. Keras' own
  ``iterations`` also advances on a step that a ``LossScaleOptimizer`` skips for non-finite
  gradients, so the bias corrections and schedules of subclasses read ``count`` instead:
  :meth:`_step` is the 1-based index of the update being applied. ``count`` is a checkpointed
  variable (attribute ``_count``).

  Args:
    name: Optimizer name.
    **kwargs: Further arguments of ``keras.optimizers.Optimizer`` (e.g. ``jit_compile``).
  """

  def __init__(self, name, **kwargs):
    super().__init__(name=name, **kwargs)
    with tf.init_scope():
      self._count = tf.Variable(0, name="count", dtype=tf.int64, trainable=False)  # applied updates

  def _step(self):
    """The 1-based index ``t`` of the update being applied."""
    return self._count + 1

  def _distributed_apply_gradients_fn(self, distribution, grads_and_vars, **kwargs):
    step = self._step()
    result = super()._distributed_apply_gradients_fn(distribution, grads_and_vars, **kwargs)
    self._count.assign(step)
    return result
