"""Pure tensor functions of DreamerV3 (Hafner et al. 2023, arXiv 2301.04104v1).

Each function is side-effect free and works on any float dtype; the tests in
``tests/agent/test_ops.py`` check them against hand-computed values.
"""

import tensorflow as tf


def symlog(x):
  """Symmetric log squashing, Eq. 9: ``sign(x) * ln(|x| + 1)``."""
  return tf.sign(x) * tf.math.log1p(tf.abs(x))


def symexp(x):
  """Inverse of :func:`symlog`, Eq. 9: ``sign(x) * (exp(|x|) - 1)``."""
  return tf.sign(x) * tf.math.expm1(tf.abs(x))


def symlog_bins(num_bins: int, low: float = -20.0, high: float = 20.0, dtype=tf.float32):
  """The twohot bin locations in symlog space: ``linspace(low, high, num_bins)``."""
  return tf.linspace(tf.constant(low, dtype), tf.constant(high, dtype), num_bins)


def symexp_bins(num_bins: int, low: float = -20.0, dtype=tf.float32):
  """The current generation's twohot bins, in raw space: ``symexp`` of evenly spaced points.

  ``symexp(linspace(low, 0, n))`` mirrored around zero (arXiv 2301.04104v2,
  ``embodied/jax/heads.py:Head.symexp_twohot``): an odd ``num_bins`` has ``(num_bins - 1) / 2 + 1``
  points in the negative half with 0 exactly in the middle; an even one has ``num_bins / 2`` points
  per half and no zero bin. The bins are symmetric, so uniform probabilities predict 0.
  """
  if num_bins % 2:
    half = symexp(tf.linspace(tf.constant(low, dtype), tf.constant(0.0, dtype), (num_bins - 1) // 2 + 1))
    return tf.concat([half, -tf.reverse(half[:-1], [0])], 0)
  half = symexp(tf.linspace(tf.constant(low, dtype), tf.constant(0.0, dtype), num_bins // 2))
  return tf.concat([half, -tf.reverse(half, [0])], 0)


def cont_target(is_terminal, horizon: float, contdisc: bool):
  """The continue predictor's target ``1 - is_terminal``, times ``1 - 1/horizon`` with ``contdisc``.

  The current generation folds the discount into the continue flag (the author's ``contdisc``,
  ``dreamerv3/agent.py:Agent.loss``), so predicted continue probabilities carry it.
  """
  cont = 1.0 - tf.cast(is_terminal, tf.float32)
  return cont * (1.0 - 1.0 / horizon) if contdisc else cont


def imagination_weights(cont_HN, discount: float):
  """Loss weights of imagined steps: ``cumprod(discount * cont, 0) / discount`` over time (axis 0).

  2023: ``cont`` is the start state's ``1 - is_terminal`` followed by predicted continue flags and
  ``discount`` is ``1 - 1/horizon``. Current generation (``contdisc``): ``cont`` is the predicted
  continue probability of every state, the start state's included, and ``discount`` is 1, since the
  probabilities already hold it (``dreamerv3/agent.py:imag_loss``).
  """
  return tf.math.cumprod(discount * cont_HN, 0) / discount


def twohot(x, bins):
  """Encodes scalars as twohot vectors over ``bins`` (Eq. 10).

  The two bins enclosing ``x`` receive weights proportional to their closeness,
  so that ``sum(twohot(x) * bins) == x`` inside the bin range. Values outside
  the range put all weight on the nearest end bin.

  Args:
    x: Values, any shape ``S``, in the same space as ``bins`` (symlog space for
      reward and value targets).
    bins: Increasing bin locations, shape ``[K]``.

  Returns:
    Weights of shape ``S + [K]`` summing to one.
  """
  x = tf.convert_to_tensor(x, bins.dtype)
  num_bins = tf.shape(bins)[0]
  below = tf.reduce_sum(tf.cast(bins <= x[..., None], tf.int32), -1) - 1
  above = num_bins - tf.reduce_sum(tf.cast(bins > x[..., None], tf.int32), -1)
  below = tf.clip_by_value(below, 0, num_bins - 1)
  above = tf.clip_by_value(above, 0, num_bins - 1)
  equal = tf.equal(below, above)
  to_below = tf.where(equal, tf.ones_like(x), tf.abs(tf.gather(bins, below) - x))
  to_above = tf.where(equal, tf.ones_like(x), tf.abs(tf.gather(bins, above) - x))
  total = to_below + to_above
  weight_below = to_above / total
  weight_above = to_below / total
  depth = tf.shape(bins)[0]
  return (
    tf.one_hot(below, depth, dtype=bins.dtype) * weight_below[..., None]
    + tf.one_hot(above, depth, dtype=bins.dtype) * weight_above[..., None]
  )


def lambda_return(reward_HB, value_HB, cont_HB, bootstrap_B, lambda_: float, discount: float):
  """TD(lambda) returns of an imagined trajectory, Eq. 7 (computed backwards).

  ``R_t = r_t + gamma c_t ((1 - lambda) v_t + lambda R_{t+1})`` with
  ``R_H = bootstrap``. Inputs are time-major: index ``t`` of ``reward``,
  ``value`` and ``cont`` refers to the state reached after step ``t``.

  Args:
    reward_HB: Rewards ``r_{t+1}``, shape ``[H, B]``.
    value_HB: Values ``v(s_{t+1})``, shape ``[H, B]``.
    cont_HB: Continuation flags ``c_{t+1}``, shape ``[H, B]``.
    bootstrap_B: The value of the last state, shape ``[B]``.
    lambda_: The return mixing parameter (0.95), or one per step (``[H, B]``).
    discount: The discount gamma (1 - 1/333 = 0.997).

  Returns:
    The returns ``R_0 .. R_{H-1}``, shape ``[H, B]``.
  """
  disc_HB = cont_HB * discount
  lambda_ = tf.cast(lambda_, disc_HB.dtype) if tf.is_tensor(lambda_) else tf.constant(lambda_, disc_HB.dtype)
  lambda_HB = tf.broadcast_to(lambda_, tf.shape(disc_HB))
  interm_HB = reward_HB + disc_HB * value_HB * (1.0 - lambda_HB)

  def step(next_return, inputs):
    interm, disc_lambda = inputs
    return interm + disc_lambda * next_return

  return tf.scan(step, (interm_HB, disc_HB * lambda_HB), initializer=bootstrap_B, reverse=True)


def replay_lambda_return(reward_BT, is_terminal_BT, is_last_BT, boot_BT, lambda_: float, discount: float):
  """Lambda returns over a replayed sequence, bootstrapped at every step (the current generation).

  The author's replay value loss (arXiv 2301.04104v2, ``dreamerv3/agent.py:repl_loss`` with its
  ``lambda_return``): with ``live_t = (1 - terminal_t) discount`` and ``lam_t = lambda (1 - last_t)``,
  ``R_t = r_{t+1} + live_{t+1} ((1 - lam_{t+1}) boot_{t+1} + lam_{t+1} R_{t+1})`` and
  ``R_{T-1} = boot_{T-1}``, where ``boot`` is the imagination return of the trajectory started at
  each step. An episode end (``is_last``) cuts the lambda mixing there.

  Args:
    reward_BT, is_terminal_BT, is_last_BT: The replayed sequence, batch-major ``[B, T]``.
    boot_BT: Bootstrap values ``[B, T]``.
    lambda_: The return mixing parameter (0.95).
    discount: ``1 - 1/horizon``.

  Returns:
    ``R_0 .. R_{T-2}``, shape ``[B, T - 1]``.
  """
  f32 = lambda x: tf.transpose(tf.cast(x, tf.float32)[:, 1:])
  cont_TB = 1.0 - f32(is_terminal_BT)
  lambda_TB = lambda_ * (1.0 - f32(is_last_BT))
  boot = tf.cast(boot_BT, tf.float32)
  ret_TB = lambda_return(f32(reward_BT), f32(boot_BT), cont_TB, boot[:, -1], lambda_TB, discount)
  return tf.transpose(ret_TB)


def percentile(x, q: float):
  """The ``q``-th percentile (0..100) of all elements, with linear interpolation.

  Matches ``numpy.percentile(x, q)`` (method 'linear').
  """
  flat = tf.sort(tf.reshape(tf.cast(x, tf.float32), [-1]))
  n = tf.cast(tf.size(flat), tf.float32)
  pos = q / 100.0 * (n - 1.0)
  lo = tf.cast(tf.floor(pos), tf.int32)
  hi = tf.minimum(lo + 1, tf.size(flat) - 1)
  frac = pos - tf.floor(pos)
  return tf.gather(flat, lo) * (1.0 - frac) + tf.gather(flat, hi) * frac
