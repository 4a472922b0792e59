"""The current generation's agent built from `--configs=nature,sizeNm`: every module's parameter count
equals the author's current code (reference_install_current.md: its own `agent.params` for a 64x64x3
uint8 image and 18 discrete actions)."""

import json
import pathlib
import subprocess
import sys

import pytest
import tensorflow as tf
from tf_agents.specs import tensor_spec

from dreamer_tf.agent.actor_critic import ActorCritic
from dreamer_tf.agent.dreamer_agent import DreamerAgent, time_step_spec_from
from dreamer_tf.agent.world_model import WorldModel
from dreamer_tf.config import load_config

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODULES = ("enc", "dyn", "dec", "rew", "con", "pol", "val")
AUTHOR_COUNTS = {
  "size1m": (14_304, 377_472, 80_595, 57_663, 41_153, 50_706, 66_111),
  "size12m": (220_416, 5_982_720, 1_272_003, 721_407, 656_129, 792_594, 853_503),
  "size25m": (493_824, 13_446_912, 2_857_635, 1_573_503, 1_475_713, 1_778_706, 1_869_951),
  "size50m": (876_032, 23_892_992, 5_076_355, 2_753_279, 2_622_977, 3_158_034, 3_279_615),
  "size100m": (1_966_848, 53_730_816, 11_413_059, 6_095_871, 5_900_545, 7_096_338, 7_278_591),
  "size200m": (3_492_864, 95_496_192, 20_282_115, 10_749_183, 10_488_833, 12_607_506, 12_850_431),
  "size400m": (7_850_496, 214_809_600, 45_617_283, 23_987_967, 23_597_569, 28_348_434, 28_712_703),
}
LARGE = ("size100m", "size200m", "size400m")
SIZE_PARAMS = [pytest.param(s, marks=pytest.mark.slow) if s in LARGE else s for s in AUTHOR_COUNTS]
IMAGE_OBS = {"image": tf.TensorSpec([64, 64, 3], tf.uint8, "image")}
ACTIONS_18 = tensor_spec.BoundedTensorSpec([], tf.int32, 0, 17, "action")


def _count(layer):
  return int(sum(v.shape.num_elements() for v in layer.trainable_variables))


@pytest.mark.parametrize("size", SIZE_PARAMS)
def test_module_counts_equal_the_author_code(size):
  # World model and actor-critic alone (no optimizer slots), built from the config as the agent builds them.
  model = load_config(None, ["nature", size]).model
  wm = WorldModel({"image": (64, 64, 3)}, 18, model)
  ac = ActorCritic(wm.rssm.feat_size, 18, True, model)
  modules = (wm.encoder, wm.rssm, wm.decoder, wm.reward_head, wm.cont_head, ac.actor, ac.critic)
  assert tuple(_count(m) for m in modules) == AUTHOR_COUNTS[size]
  assert _count(ac.slow_critic) == 0 and ac.slow_critic.count_params() == AUTHOR_COUNTS[size][-1]


def test_agent_module_counts():
  agent = DreamerAgent(time_step_spec_from(IMAGE_OBS), ACTIONS_18, load_config(None, ["nature", "size1m"]))
  counts = agent.module_counts()
  assert counts == dict(zip(MODULES, AUTHOR_COUNTS["size1m"]))
  totals = agent.parameter_counts()
  assert totals["world_model"] == sum(AUTHOR_COUNTS["size1m"][:5])
  assert (totals["actor"], totals["critic"]) == AUTHOR_COUNTS["size1m"][5:]


def test_count_params_tool_prints_the_modules():
  out = subprocess.run(
    [
      sys.executable,
      str(ROOT / "tools" / "count_params.py"),
      "--configs=nature,size1m",
      "--env=atari100k_pong",
      "--override=env.atari.actions=all",
    ],
    capture_output=True,
    text=True,
    cwd=ROOT,
    timeout=300,
  )
  assert out.returncode == 0, out.stderr[-2000:]
  modules, totals = (json.loads(line) for line in out.stdout.strip().splitlines()[-2:])
  assert modules == dict(zip(MODULES, AUTHOR_COUNTS["size1m"]))
  assert totals == {
    "world_model": sum(AUTHOR_COUNTS["size1m"][:5]),
    "actor": AUTHOR_COUNTS["size1m"][5],
    "critic": AUTHOR_COUNTS["size1m"][6],
  }
