"""Output distributions of DreamerV3's heads, each with ``mode``/``mean``/``log_prob``.

They follow the official implementation's "outputs with .pred()/.loss()"
shape: a head produces a distribution object and the loss is its negative
``log_prob`` of the target. All math runs in float32 regardless of the compute
dtype (mixed precision casts the network outputs up first). Sampling is
stateless: ``sample(seed)`` takes a shape ``[2]`` integer seed tensor, so that
the train step, the policy and exported SavedModels are reproducible and run
under XLA.
"""

import tensorflow as tf

from dreamer_tf.agent import ops

_F32 = tf.float32


def _f32(x):
  return tf.cast(x, _F32)


def _stateless_onehot(logits, seed):
  """Draws one-hot samples from categorical ``logits`` [..., K]."""
  shape = tf.shape(logits)
  flat = tf.reshape(logits, [-1, shape[-1]])
  # XLA (TPU, --jit_compile) implements this op for int32 seeds only.
  index = tf.random.stateless_categorical(flat, 1, tf.cast(seed, tf.int32), dtype=tf.int32)[:, 0]
  return tf.reshape(tf.one_hot(index, shape[-1], dtype=logits.dtype), shape)


class OneHotCategorical:
  """Categorical over one-hot vectors with unimix and straight-through gradients.

  The probabilities are mixed with ``unimix`` of a uniform distribution (Sec. 2,
  "1% unimix") and samples carry straight-through gradients
  ``sample + probs - stop_gradient(probs)``. ``event_dims`` trailing dimensions
  before the class axis are summed in ``log_prob``, ``entropy`` and ``kl``
  (1 for the RSSM's 32 latents, 0 for the actor).
  """

  def __init__(self, logits, unimix: float = 0.0, event_dims: int = 0):
    logits = _f32(logits)
    if unimix:
      probs = tf.nn.softmax(logits, -1)
      self.probs = (1.0 - unimix) * probs + unimix / tf.cast(tf.shape(logits)[-1], _F32)
      self.log_probs = tf.math.log(self.probs)  # Already normalised: these are the logits.
      self.logits = self.log_probs
    else:
      self.logits = logits
      self.log_probs = tf.nn.log_softmax(logits, -1)
      self.probs = tf.exp(self.log_probs)
    self._sum_axes = list(range(-event_dims - 1, 0))

  def _straight_through(self, onehot):
    return onehot + self.probs - tf.stop_gradient(self.probs)

  def mode(self):
    index = tf.argmax(self.logits, -1)
    return self._straight_through(tf.one_hot(index, tf.shape(self.logits)[-1], dtype=_F32))

  def sample(self, seed):
    return self._straight_through(_stateless_onehot(self.logits, seed))

  def log_prob(self, onehot):
    return tf.reduce_sum(_f32(onehot) * self.log_probs, self._sum_axes)

  def entropy(self):
    return -tf.reduce_sum(self.probs * self.log_probs, self._sum_axes)

  def kl(self, other: "OneHotCategorical"):
    """KL(self || other), summed over the event dimensions."""
    return tf.reduce_sum(self.probs * (self.log_probs - other.log_probs), self._sum_axes)


class Categorical(OneHotCategorical):
  """A categorical over class indices (a discrete vector observation's decoder output).

  ``log_prob`` takes indices (any number type) rather than one-hot vectors and ``mode`` returns
  indices as float32, as the current generation's ``embodied/jax/outs.py:Categorical``; no unimix.
  """

  def __init__(self, logits, event_dims: int = 0):
    super().__init__(logits, 0.0, event_dims)

  def mode(self):
    return tf.cast(tf.argmax(self.logits, -1), _F32)

  mean = mode

  def log_prob(self, index):
    onehot = tf.one_hot(tf.cast(index, tf.int32), tf.shape(self.logits)[-1], dtype=_F32)
    return super().log_prob(onehot)


class TwoHotSymlog:
  """Discrete regression over bins in symlog space (Eq. 10-11, the 2023 version).

  The head predicts ``logits`` over ``bins`` = linspace(-20, 20, K) in symlog
  space; the prediction is ``symexp(sum(softmax(logits) * bins))`` and the loss
  of a target ``y`` is the cross-entropy with ``twohot(symlog(y))``.
  """

  def __init__(self, logits, bins):
    self.logits = _f32(logits)
    self.bins = bins
    self.probs = tf.nn.softmax(self.logits, -1)

  def mean(self):
    return ops.symexp(tf.reduce_sum(self.probs * self.bins, -1))

  mode = mean

  def log_prob(self, target):
    target = ops.twohot(ops.symlog(_f32(target)), self.bins)
    return tf.reduce_sum(target * tf.nn.log_softmax(self.logits, -1), -1)


class SymexpTwoHot:
  """Discrete regression over bins in raw space (the current generation, arXiv 2301.04104v2).

  ``bins`` are :func:`~dreamer_tf.agent.ops.symexp_bins` (exponentially spaced, symmetric); the
  target's twohot weights interpolate linearly in raw space between its two neighbouring bins and
  the prediction is ``sum(softmax(logits) * bins)`` summed outwards from the middle, so that
  symmetric probabilities give exactly 0 (``embodied/jax/outs.py:TwoHot``).
  """

  def __init__(self, logits, bins):
    self.logits = _f32(logits)
    self.bins = bins
    self.probs = tf.nn.softmax(self.logits, -1)

  def mean(self):
    n = self.bins.shape[0]
    weighted = self.probs * self.bins
    lower, upper = weighted[..., : n // 2], weighted[..., (n + 1) // 2 :]
    middle = tf.reduce_sum(weighted[..., n // 2 : (n + 1) // 2], -1)
    return middle + tf.reduce_sum(tf.reverse(lower, [-1]) + upper, -1)

  mode = mean

  def log_prob(self, target):
    target = ops.twohot(_f32(target), self.bins)
    return tf.reduce_sum(target * tf.nn.log_softmax(self.logits, -1), -1)


class MSE:
  """Unnormalised Gaussian with unit variance: ``log_prob = -sum((mode - x)^2)``."""

  def __init__(self, mode, event_dims: int):
    self._mode = _f32(mode)
    self._axes = list(range(-event_dims, 0))

  def mode(self):
    return self._mode

  mean = mode

  def log_prob(self, value):
    return -tf.reduce_sum(tf.square(self._mode - _f32(value)), self._axes)


class SymlogMSE:
  """MSE in symlog space (Eq. 8): predicts ``symexp(pred)``, loss ``(pred - symlog(x))^2``.

  As in the 2023 code, squared distances below ``tol`` (1e-8) count as 0, with
  no gradient, before they are summed over the event dimensions.
  """

  def __init__(self, pred, event_dims: int = 1, tol: float = 1e-8):
    self._pred = _f32(pred)
    self._axes = list(range(-event_dims, 0))
    self._tol = tol

  def mode(self):
    return ops.symexp(self._pred)

  mean = mode

  def log_prob(self, value):
    distance = tf.square(self._pred - ops.symlog(_f32(value)))
    distance = tf.where(distance < self._tol, tf.zeros_like(distance), distance)
    return -tf.reduce_sum(distance, self._axes)


class Bernoulli:
  """Bernoulli over {0, 1} from logits; ``mode`` is 1 where the probability exceeds 0.5."""

  def __init__(self, logits):
    self.logits = _f32(logits)

  def mean(self):
    return tf.sigmoid(self.logits)

  def mode(self):
    return tf.cast(self.logits > 0.0, _F32)

  def log_prob(self, value):
    value = _f32(value)
    return value * tf.math.log_sigmoid(self.logits) + (1.0 - value) * tf.math.log_sigmoid(-self.logits)


class BoundedNormal:
  """Diagonal Normal with ``mean = tanh(x)`` and ``std`` in ``[minstd, maxstd]``.

  The continuous actor of the 2023 version:
  ``std = (maxstd - minstd) * sigmoid(s + 2) + minstd``. Samples are
  reparameterised, so dynamics backpropagation reaches the actor.
  """

  def __init__(self, mean, std_logits, minstd: float, maxstd: float):
    self.loc = tf.tanh(_f32(mean))
    self.scale = (maxstd - minstd) * tf.sigmoid(_f32(std_logits) + 2.0) + minstd

  def mode(self):
    return self.loc

  mean = mode

  def sample(self, seed):
    return self.loc + self.scale * tf.random.stateless_normal(tf.shape(self.loc), seed)

  def log_prob(self, value):
    z = (_f32(value) - self.loc) / self.scale
    log_unnormalized = -0.5 * tf.square(z)
    log_normalization = 0.5 * tf.math.log(2.0 * 3.141592653589793) + tf.math.log(self.scale)
    return tf.reduce_sum(log_unnormalized - log_normalization, -1)

  def entropy(self):
    return tf.reduce_sum(0.5 + 0.5 * tf.math.log(2.0 * 3.141592653589793) + tf.math.log(self.scale), -1)
