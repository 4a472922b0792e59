"""The DreamerV3 agent: networks, world model, actor-critic, TF-Agents agent and policy."""

from dreamer_tf.agent.actor_critic import ActorCritic
from dreamer_tf.agent.dreamer_agent import DreamerAgent
from dreamer_tf.agent.dreamer_policy import DreamerPolicy
from dreamer_tf.agent.return_normalizer import ReturnNormalizer
from dreamer_tf.agent.world_model import WorldModel

__all__ = ["ActorCritic", "DreamerAgent", "DreamerPolicy", "ReturnNormalizer", "WorldModel"]
