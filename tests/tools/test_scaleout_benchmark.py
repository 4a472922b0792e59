"""Tests for tools/scaleout_benchmark.py: 2 mirrored replicas with local and Reverb replay."""

import json
import pathlib
import subprocess
import sys

import pytest

TOOL = pathlib.Path(__file__).resolve().parents[2] / "tools" / "scaleout_benchmark.py"


@pytest.mark.slow
def test_two_replicas_with_local_and_reverb_replay(tmp_path):
  out = tmp_path / "scaleout.json"
  cmd = [sys.executable, str(TOOL), "--configs=debug", "--replicas=2", "--replays=local,reverb"]
  cmd += ["--updates=2", "--fill=200", f"--json={out}"]
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads(out.read_text())
  results = {r["replay"]: r for r in report["results"]}
  assert sorted(results) == ["local", "reverb"]
  for r in results.values():
    assert r["replicas"] == 2  # num_replicas_in_sync of the strategy the Trainer trained under.
    assert len(r["devices"]) == 2 and all("CPU" in d for d in r["devices"])
    assert len(r["train/sec_per_update_all"]) == 2
    assert r["train/replayed_steps_per_sec"] == pytest.approx(4 * 16 / r["train/sec_per_update"])
    assert r["sample/batches_per_sec"] > 0
  assert "replayed steps/s" in proc.stdout and "reverb" in proc.stdout


def test_failed_combination_is_reported_in_one_line(tmp_path):
  cmd = [sys.executable, str(TOOL), "--configs=no_such_preset", "--replicas=1", "--replays=local"]
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
  assert proc.returncode != 0
  assert "1 replicas with local replay failed" in proc.stderr
  assert "no_such_preset" in proc.stderr
