"""Subprocess check of distribute.distributed_train_fn with ``jit_compile`` under the ``XLA_FLAGS`` the
test gives it (``--xla_cpu_multi_thread_eigen=false``): a symexp twohot head's logits and prediction,
compiled by the train function's XLA and computed by plain TensorFlow ops.

The head's output layer has every bin's weight column the same except the 4 around 0 (as a zero-initialised
reward or critic head keeps them while it learns targets near 0), so every far bin's logit must come out the
same and the mirrored bins cancel. Prints ``RESULT {json}``: the far bins whose compiled logits differ from
bin 0's, and the root mean square difference of the compiled and plain predictions.
"""

import json

import numpy as np
import tensorflow as tf

import dreamer_tf  # noqa: F401
from dreamer_tf import distribute
from dreamer_tf.agent import ops
from dreamer_tf.agent.distributions import SymexpTwoHot

BINS = 255
NEAR_ZERO = slice(126, 130)


class _Head:
  """Stands in for the agent: ``train`` is the head's forward pass (logits and prediction)."""

  def __init__(self, seed=0):
    rng = np.random.default_rng(seed)
    kernel = np.tile(rng.normal(0.0, 0.05, (32, 1)), (1, BINS)).astype(np.float32)
    kernel[:, NEAR_ZERO] += rng.normal(0.0, 0.3, (32, 4)).astype(np.float32)
    bias = np.full(BINS, -3.0, np.float32)
    bias[NEAR_ZERO] = 0.0
    self.kernel, self.bias = tf.constant(kernel), tf.constant(bias)
    self.bins = ops.symexp_bins(BINS)
    self.feat = tf.constant(rng.normal(size=(960, 32)).astype(np.float32))

  def train(self, feat):
    logits = tf.matmul(feat, self.kernel) + self.bias
    return logits, SymexpTwoHot(logits, self.bins).mean()


def main():
  head = _Head()
  compiled = distribute.distributed_train_fn(tf.distribute.get_strategy(), head, jit_compile=True)
  logits, mean = (x.numpy() for x in compiled(head.feat))
  _, plain = (x.numpy() for x in head.train(head.feat))
  far = [i for i in range(BINS) if not NEAR_ZERO.start <= i < NEAR_ZERO.stop]
  unequal = [i for i in far if (logits[:, i] != logits[:, 0]).any()]
  rms = float(np.sqrt(np.mean((mean - plain) ** 2)))
  print("RESULT " + json.dumps({"unequal_far_bins": unequal, "rms_difference": rms}), flush=True)


if __name__ == "__main__":
  main()
