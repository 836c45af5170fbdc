# Fixtures of the Python module's tests. CTest runs them with PYTHONPATH at BUILD/python and
# HISTOSCAN_BINARY (the CLI, for the same work done the command line's way) and
# HISTOSCAN_SHARED_DATA (the team's real data; the real-data file skips without it) set.
import os
import pathlib
import subprocess

import pytest

import histoscan


def run_cli(*args):
    """Runs the histoscan binary; returns its stdout, failing the test with its stderr."""
    r = subprocess.run([os.environ["HISTOSCAN_BINARY"], *map(str, args)], capture_output=True, text=True)
    assert r.returncode == 0, f"histoscan {' '.join(map(str, args))}: {r.stderr}"
    return r.stdout


def read_submission(path):
    """id -> probability of a `histoscan predict` CSV."""
    lines = pathlib.Path(path).read_text().splitlines()
    assert lines[0] == "id,label"
    return {i: float(p) for i, p in (line.split(",") for line in lines[1:])}


@pytest.fixture(scope="session")
def synth(tmp_path_factory):
    """A Kaggle-style folder of synthetic patches (histoscan synth): train/, train_labels.csv, test/."""
    d = tmp_path_factory.mktemp("synth") / "data"
    run_cli("synth", d, "--train", 160, "--test", 24, "--seed", 3)
    return d


@pytest.fixture(scope="session")
def trained(synth, tmp_path_factory):
    """A seed-cnn trained from Python for 2 epochs on the synthetic patches: (model, run folder)."""
    out = tmp_path_factory.mktemp("run") / "seed"
    model = histoscan.train(synth / "train", out, model="seed-cnn", epochs=2, batch=16, lr=0.003, seed=5,
                            threads=2, quiet=True)
    return model, out
