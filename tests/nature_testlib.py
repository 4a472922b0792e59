"""Shared by the current generation's tests: the author's size presets and parameter names."""

# dreamerv3/configs.yaml (danijar/dreamerv3 e3f0224): rssm deter / hidden / classes, depth, units.
SIZES = {
  "size1m": (512, 64, 4, 4, 64),
  "size12m": (2048, 256, 16, 16, 256),
  "size25m": (3072, 384, 24, 24, 384),
  "size50m": (4096, 512, 32, 32, 512),
  "size100m": (6144, 768, 48, 48, 768),
  "size200m": (8192, 1024, 64, 64, 1024),
  "size400m": (12288, 1536, 96, 96, 1536),
}


# The author's parameter names: one map, shared with tools/parity.py check-update --generation=current.
from dreamer_tf.agent.author_names import add_names, block_gru_names, block_rssm_names, image_names  # noqa: E402,F401
