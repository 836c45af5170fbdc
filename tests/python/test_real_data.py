# import histoscan on the team's real data (../shared/data): every DATA form read, a model
# trained and scored, predictions equal to the command line's, metrics equal to scikit-learn's.
# CTest skips this file (exit 77) where the data is absent.
import os
import pathlib

import numpy as np
import pytest
from sklearn import metrics as skm

import histoscan
from conftest import read_submission, run_cli

DATA = pathlib.Path(os.environ.get("HISTOSCAN_SHARED_DATA", "../shared/data"))


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """The default recipe for one epoch on 200 real PCam patches a class."""
    out = tmp_path_factory.mktemp("real") / "run"
    model = histoscan.train(DATA / "pcam-subset" / "train", out, per_class=200, epochs=1, seed=13, quiet=True)
    return model, out


@pytest.fixture(scope="module")
def valid_sample(tmp_path_factory):
    """128 patches of each class of pcam-subset/valid as a plain folder of links (what predict takes)."""
    d = tmp_path_factory.mktemp("valid") / "patches"
    d.mkdir()
    labels = {}
    for c in ("0", "1"):
        for f in sorted((DATA / "pcam-subset" / "valid" / c).iterdir())[:128]:
            (d / f.name).symlink_to(f)
            labels[f.stem] = int(c)
    return d, labels


def test_read_patches_reads_every_data_form():
    images, labels, ids = histoscan.read_patches(DATA / "kaggle-sample" / "train")
    rows = dict(line.split(",") for line in (DATA / "kaggle-sample" / "train_labels.csv").read_text().splitlines()[1:])
    assert len(ids) > 0 and images.shape == (len(ids), 96, 96, 3)
    assert [int(rows[i]) for i in ids] == labels.tolist()
    images, labels, ids = histoscan.read_patches(DATA / "pcam-subset" / "valid", limit=300)
    assert images.shape == (300, 96, 96, 3) and set(labels.tolist()) <= {0, 1}
    h5 = DATA / "pcam-h5" / "camelyonpatch_level_2_split_valid_x.h5"
    images, labels, ids = histoscan.read_patches(h5, limit=64)
    import h5py
    with h5py.File(h5, "r") as f:
        assert np.array_equal(images, f["x"][:64])
    with h5py.File(DATA / "pcam-h5" / "camelyonpatch_level_2_split_valid_y.h5", "r") as f:
        assert labels.tolist() == f["y"][:64].reshape(-1).tolist()


def test_predict_on_real_patches_equals_the_command_line(real_run, valid_sample, tmp_path):
    model, out = real_run
    folder, _ = valid_sample
    images, _, ids = histoscan.read_patches(folder)
    probs = model.predict(images)
    run_cli("predict", out / "best.pt", folder, "--out", tmp_path / "s.csv")
    cli = read_submission(tmp_path / "s.csv")
    assert np.abs(probs - np.array([cli[i] for i in ids], dtype=np.float64)).max() <= 1e-6


def test_real_metrics_equal_scikit_learn_and_beat_chance(real_run, valid_sample):
    model, _ = real_run
    folder, truth = valid_sample
    images, _, ids = histoscan.read_patches(folder)
    labels = np.array([truth[i] for i in ids])
    probs = model.predict(images).astype(np.float64)
    m = histoscan.metrics(labels, probs, bootstrap=200)
    assert m["auc"] == pytest.approx(skm.roc_auc_score(labels, probs), abs=1e-9)
    assert m["log_loss"] == pytest.approx(skm.log_loss(labels, probs), abs=1e-9)
    assert m["average_precision"] == pytest.approx(skm.average_precision_score(labels, probs), abs=1e-9)
    pred = (probs >= 0.5).astype(int)
    assert m["confusion_matrix"] == skm.confusion_matrix(labels, pred).tolist()
    assert m["auc"] > 0.6  # one epoch of 400 patches already separates the classes
    assert m["intervals"]["auc"]["low"] <= m["auc"] <= m["intervals"]["auc"]["high"]
