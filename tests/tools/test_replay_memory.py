"""Tests for tools/replay_memory.py --full: the memory of a full replay, with and without latents."""

import importlib.util
import json
import pathlib

import pytest

pytest.importorskip("ale_py")
pytest.importorskip("cv2")

_PATH = pathlib.Path(__file__).resolve().parents[2] / "tools" / "replay_memory.py"
_spec = importlib.util.spec_from_file_location("dreamer_tools_replay_memory", _PATH)
replay_memory = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(replay_memory)


def test_full_replay_projects_both_frame_shapes_with_and_without_latents(capsys):
  replay_memory.main(["--frames", "1024", "--envs", "2", "--chunk-size", "256", "--full", "5e6", "--json"])
  out = json.loads(capsys.readouterr().out)
  assert out["capacity_steps"] == 5_000_000
  assert out["latent_bytes_per_step"] == 4 * (8192 + 32 * 64)  # size200m deter and stoch, float32.
  # Uncompressed: the frame plus action int32, reward float32 and three flags per step.
  for shape, frame in (("64x64x3", 64 * 64 * 3), ("96x96x1", 96 * 96)):
    r = out["shapes"][shape]
    assert r["bytes_per_step_uncompressed"] == frame + 11
    assert r["gb_uncompressed"] == pytest.approx((frame + 11) * 5e6 / 1e9, abs=0.01)
    assert r["gb_compressed_with_latents"] == pytest.approx(r["gb_compressed"] + 40960 * 5e6 / 1e9, abs=0.01)
    assert 0 < r["bytes_per_step_compressed"] < r["bytes_per_step_uncompressed"]
