"""Tests for tools/plot.py."""

import importlib.util
import json
import pathlib

import numpy as np
import pytest

_PLOT_PATH = pathlib.Path(__file__).resolve().parents[2] / "tools" / "plot.py"
_spec = importlib.util.spec_from_file_location("dreamer_tools_plot", _PLOT_PATH)
plot = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plot)


def _fake_run(run_dir, seed, scale, steps=200_000):
  rng = np.random.default_rng(seed)
  run_dir.mkdir(parents=True)
  with open(run_dir / "metrics.jsonl", "w") as f:
    for step in range(0, steps, 1000):
      f.write(json.dumps({"step": step, "loss/model": 1.0}) + "\n")
      if step % 3000 == 0:
        value = scale * (1 - np.exp(-step / 50_000)) + rng.normal(0, 60)
        f.write(json.dumps({"step": step, "episode/return": value, "episode/length": 1000}) + "\n")
    f.write('{"step": 999999, "episode/ret')  # Partial last line from a killed run.


def test_plots_grouped_seeds_and_single_run(tmp_path):
  for seed in range(3):
    _fake_run(tmp_path / f"dreamer_seed{seed}", seed, scale=900)
  _fake_run(tmp_path / "baseline" / "0", 7, scale=500, steps=150_000)
  out = tmp_path / "plots" / "curve.png"
  argv = [str(tmp_path / f"dreamer_seed{s}") for s in range(3)]
  argv += [str(tmp_path / "baseline" / "0" / "metrics.jsonl"), f"--out={out}"]
  argv += ["--reference=991", "--reference_label=paper", "--title=walker_walk"]
  assert plot.main(argv) == 0
  assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert out.stat().st_size > 10_000


def test_explicit_labels_and_directory_of_runs(tmp_path):
  _fake_run(tmp_path / "runs" / "a", 0, scale=100)
  _fake_run(tmp_path / "runs" / "b", 1, scale=200)
  out = tmp_path / "out.png"
  assert plot.main([str(tmp_path / "runs"), f"--out={out}", "--label=both", "--band=std"]) == 0
  assert out.exists()


def test_log_y_axis(tmp_path, monkeypatch):
  _fake_run(tmp_path / "run", 0, scale=1)
  import matplotlib.pyplot as plt

  figures = []
  monkeypatch.setattr(plt, "close", figures.append)
  for flags in ([], ["--log_y"]):
    assert plot.main([str(tmp_path / "run"), f"--out={tmp_path / 'loss.png'}", "--key=loss/model", *flags]) == 0
  assert [f.axes[0].get_yscale() for f in figures] == ["linear", "log"]


def test_default_labels_strip_seeds(tmp_path):
  assert plot.default_label(tmp_path / "walker_seed3" / "metrics.jsonl") == "walker"
  assert plot.default_label(tmp_path / "walker" / "seed1" / "metrics.jsonl") == "walker"
  assert plot.default_label(tmp_path / "walker" / "2" / "metrics.jsonl") == "walker"
  assert plot.default_label(tmp_path / "dreamer_v3" / "metrics.jsonl") == "dreamer_v3"


def test_binned_interpolates_inside_and_leaves_outside_empty():
  edges = np.linspace(0, 10, 11)
  values = plot.binned(np.array([0.5, 4.5]), np.array([0.0, 4.0]), edges)
  np.testing.assert_allclose(values[:5], [0, 1, 2, 3, 4])
  assert np.isnan(values[5:]).all()


def test_errors_are_one_line(tmp_path, capsys):
  _fake_run(tmp_path / "run", 0, scale=1)
  assert plot.main([str(tmp_path / "run"), f"--out={tmp_path / 'x.png'}", "--key=nope"]) == 2
  assert plot.main([str(tmp_path / "missing"), f"--out={tmp_path / 'x.png'}"]) == 2
  errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
  assert len(errors) == 2 and "--key=nope" in errors[0] and "missing" in errors[1]
  with pytest.raises(SystemExit):
    plot.parse_args([str(tmp_path / "run")])  # --out is required.


def test_smooth_ignores_missing_bins():
  values = np.array([1.0, 3.0, np.nan, 5.0, 7.0])
  smoothed = plot.smooth(values, 3)
  np.testing.assert_allclose(smoothed[[0, 1, 3, 4]], [2.0, 2.0, 6.0, 6.0])
  assert np.isnan(smoothed[2])
  assert plot.smooth(values, 1) is values
