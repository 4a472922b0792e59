"""Keras layers of DreamerV3: encoder, decoder, RSSM and heads (2023 generation; current-generation pieces)."""

from dreamer_tf.agent.networks.block_gru import BlockGRU
from dreamer_tf.agent.networks.block_linear import BlockLinear
from dreamer_tf.agent.networks.block_rssm import BlockRSSM
from dreamer_tf.agent.networks.heads import Head
from dreamer_tf.agent.networks.image_decoder import ImageDecoder
from dreamer_tf.agent.networks.image_encoder import ImageEncoder
from dreamer_tf.agent.networks.mlp import MLP
from dreamer_tf.agent.networks.multi_decoder import MultiDecoder
from dreamer_tf.agent.networks.multi_encoder import MultiEncoder
from dreamer_tf.agent.networks.norm_dense import NormDense
from dreamer_tf.agent.networks.pooling_image_encoder import PoolingImageEncoder
from dreamer_tf.agent.networks.rms_norm import RMSNorm
from dreamer_tf.agent.networks.rms_norm_dense import RMSNormDense
from dreamer_tf.agent.networks.rssm import RSSM
from dreamer_tf.agent.networks.truncated_normal_fan_in import TruncatedNormalFanIn
from dreamer_tf.agent.networks.upsampling_image_decoder import UpsamplingImageDecoder

__all__ = [
  "MLP",
  "RSSM",
  "BlockGRU",
  "BlockLinear",
  "BlockRSSM",
  "Head",
  "ImageDecoder",
  "ImageEncoder",
  "MultiDecoder",
  "MultiEncoder",
  "NormDense",
  "PoolingImageEncoder",
  "RMSNorm",
  "RMSNormDense",
  "TruncatedNormalFanIn",
  "UpsamplingImageDecoder",
]
