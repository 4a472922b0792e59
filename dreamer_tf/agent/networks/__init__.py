"""Keras layers of DreamerV3: encoder, decoder, RSSM and heads."""

from dreamer_tf.agent.networks.heads import Head
from dreamer_tf.agent.networks.image_decoder import ImageDecoder
from dreamer_tf.agent.networks.image_encoder import ImageEncoder
from dreamer_tf.agent.networks.mlp import MLP
from dreamer_tf.agent.networks.multi_decoder import MultiDecoder
from dreamer_tf.agent.networks.multi_encoder import MultiEncoder
from dreamer_tf.agent.networks.norm_dense import NormDense
from dreamer_tf.agent.networks.rssm import RSSM

__all__ = ["MLP", "RSSM", "Head", "ImageDecoder", "ImageEncoder", "MultiDecoder", "MultiEncoder", "NormDense"]
