# import histoscan on synthetic patches: every function, the same numbers as the command line,
# errors a user can act on, and a model shared by threads.
import json
import pathlib
import os
import signal
import threading
import time

import numpy as np
import pytest
from sklearn import metrics as skm

import histoscan
from conftest import read_submission, run_cli


def test_load_gives_the_checkpoint_and_its_metadata(trained):
    model, out = trained
    again = histoscan.load(out / "best.pt", device="cpu")
    assert again.metadata["model"] == "seed-cnn"
    assert again.metadata["training"]["epochs"] == 2
    assert again.threshold == pytest.approx(model.metadata.get("threshold", 0.5))
    assert again.device == "cpu"
    assert "seed-cnn" in repr(again)


def test_load_without_a_path_gives_the_built_in_model(monkeypatch):
    monkeypatch.delenv("HISTOSCAN_MODELS", raising=False)
    root = pathlib.Path(__file__).resolve().parents[2]
    default, by_name = histoscan.load(), histoscan.load("pcam-resnet")
    by_file = histoscan.load(root / "models" / "pcam-resnet.pt")
    assert default.metadata["training"]["command"].startswith("histoscan train ")
    images, labels, _ = histoscan.read_patches(root / "samples" / "pcam" / "test", limit=32)
    p = by_file.predict(images)
    assert np.array_equal(default.predict(images), p) and np.array_equal(by_name.predict(images), p)


def test_load_of_a_missing_file_names_it(tmp_path):
    with pytest.raises(ValueError, match="nothing.pt"):
        histoscan.load(tmp_path / "nothing.pt")


def test_read_patches_gives_images_labels_and_ids_in_id_order(synth):
    images, labels, ids = histoscan.read_patches(synth / "train")
    assert images.shape == (160, 96, 96, 3) and images.dtype == np.uint8
    assert labels.shape == (160,) and set(labels.tolist()) == {0, 1}
    assert ids == sorted(ids)
    rows = dict(line.split(",") for line in (synth / "train_labels.csv").read_text().splitlines()[1:])
    assert [int(rows[i]) for i in ids] == labels.tolist()
    first, _, first_ids = histoscan.read_patches(synth / "train", limit=5)
    assert first_ids == ids[:5] and np.array_equal(first, images[:5])
    test_images, test_labels, _ = histoscan.read_patches(synth / "test")
    assert len(test_images) == 24 and (test_labels == -1).all()


def test_predict_equals_the_command_line(trained, synth, tmp_path):
    model, out = trained
    images, _, ids = histoscan.read_patches(synth / "test")
    probs = model.predict(images)
    assert probs.dtype == np.float32 and probs.shape == (24,)
    run_cli("predict", out / "best.pt", synth / "test", "--out", tmp_path / "s.csv", "--threads", 2)
    cli = read_submission(tmp_path / "s.csv")
    assert np.abs(probs - np.array([cli[i] for i in ids])).max() <= 1e-6
    # the 8 dihedral views, as predict --tta
    tta = model.predict(images, tta=True, batch=7)
    run_cli("predict", out / "best.pt", synth / "test", "--out", tmp_path / "t.csv", "--tta")
    cli = read_submission(tmp_path / "t.csv")
    assert np.abs(tta - np.array([cli[i] for i in ids])).max() <= 1e-6
    assert np.array_equal(model.predict(images, tta=8, batch=7), tta) and np.array_equal(model.predict(images, tta=1), probs)
    # two views, the patch and its left-right mirror, as predict --tta=2 (given before the data:
    # the flag takes a count only after '=' and leaves the checkpoint and data alone)
    two = model.predict(images, tta=2)
    mirrored = model.predict(np.ascontiguousarray(images[:, :, ::-1]))
    assert np.abs(two - (probs + mirrored) / 2).max() <= 1e-6
    assert np.abs(two - probs).max() > 1e-4, "the views agree; the comparison would prove nothing"
    run_cli("predict", "--tta=2", out / "best.pt", synth / "test", "--out", tmp_path / "t2.csv")
    cli = read_submission(tmp_path / "t2.csv")
    assert np.abs(two - np.array([cli[i] for i in ids])).max() <= 1e-6


def test_tta_takes_true_false_or_a_number_of_views(trained, synth, tmp_path):
    import subprocess
    model, out = trained
    images, _, _ = histoscan.read_patches(synth / "test", limit=4)
    with pytest.raises(ValueError, match="1, 2, 4 or 8; got 3"):
        model.predict(images, tta=3)
    with pytest.raises(TypeError, match="got str"):
        model.predict(images, tta="2")
    assert np.array_equal(model.predict(images, tta=np.int64(2)), model.predict(images, tta=2))
    r = subprocess.run([os.environ["HISTOSCAN_BINARY"], "predict", str(out / "best.pt"), str(synth / "test"), "--tta=3",
                        "--out", str(tmp_path / "t3.csv")], capture_output=True, text=True)
    assert r.returncode == 2 and "--tta" in r.stderr and "1, 2, 4 or 8" in r.stderr, r.stderr
    assert not (tmp_path / "t3.csv").exists()


def test_predict_takes_strided_arrays_and_no_patches(trained, synth):
    model, _ = trained
    images, _, _ = histoscan.read_patches(synth / "test")
    probs = model.predict(images)
    # a strided view is copied to contiguous memory: the same result as a contiguous copy
    assert np.array_equal(model.predict(images[::2]), model.predict(np.ascontiguousarray(images[::2])))
    assert np.abs(model.predict(images[::2]) - probs[::2]).max() <= 1e-6
    flipped = np.ascontiguousarray(images[:, :, :, ::-1][:, :, :, ::-1])
    assert np.array_equal(model.predict(flipped), probs)
    assert model.predict(images[:0]).shape == (0,)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 96, 96, 3), np.float32), "uint8"),
    (np.zeros((2, 3, 96, 96), np.uint8), r"shape \(N, 96, 96, 3\).*\(2, 3, 96, 96\)"),
    (np.zeros((96, 96, 3), np.uint8), r"\(96, 96, 3\)"),
    (np.zeros((1, 64, 64, 3), np.uint8), r"\(1, 64, 64, 3\)"),
])
def test_predict_refuses_wrong_dtypes_and_shapes(trained, bad, message):
    model, _ = trained
    with pytest.raises(ValueError, match=message):
        model.predict(bad)


def test_one_model_from_two_threads(trained, synth):
    model, _ = trained
    images, _, _ = histoscan.read_patches(synth / "train")
    alone = {k: model.predict(images[k::2]) for k in (0, 1)}
    results = {}

    def work(k):
        results[k] = [model.predict(images[k::2]) for _ in range(3)]

    threads = [threading.Thread(target=work, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in (0, 1):
        for r in results[k]:
            assert np.array_equal(r, alone[k])


def test_metrics_equal_scikit_learn():
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 2, 500)
    probs = np.clip(labels * 0.3 + rng.random(500) * 0.7, 0, 1).round(2)  # ties, as real scores have
    m = histoscan.metrics(labels, probs, bootstrap=0)
    assert m["auc"] == pytest.approx(skm.roc_auc_score(labels, probs), abs=1e-9)
    pred = (probs >= 0.5).astype(int)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(labels, pred), abs=1e-9)
    assert m["confusion_matrix"] == skm.confusion_matrix(labels, pred).tolist()
    report = skm.classification_report(labels, pred, output_dict=True, zero_division=0)
    for c in ("0", "1"):
        for k in ("precision", "recall"):
            assert m["classes"][c][k] == pytest.approx(report[c][k], abs=1e-9)
        assert m["classes"][c]["f1"] == pytest.approx(report[c]["f1-score"], abs=1e-9)
    assert m["average_precision"] == pytest.approx(skm.average_precision_score(labels, probs), abs=1e-9)
    assert m["log_loss"] == pytest.approx(skm.log_loss(labels, probs), abs=1e-9)
    assert m["brier"] == pytest.approx(skm.brier_score_loss(labels, probs), abs=1e-9)
    assert m["mcc"] == pytest.approx(skm.matthews_corrcoef(labels, pred), abs=1e-9)
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(labels, pred), abs=1e-9)
    fpr, tpr, _ = skm.roc_curve(labels, probs)
    assert np.allclose(m["roc"]["fpr"], fpr, atol=1e-12) and np.allclose(m["roc"]["tpr"], tpr, atol=1e-12)


def test_metrics_equal_the_metrics_command(tmp_path):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 200)
    probs = rng.random(200)
    with open(tmp_path / "p.csv", "w") as f:
        f.write("id,label,probability\n")
        for i, (y, p) in enumerate(zip(labels, probs)):
            f.write(f"{i},{y},{p:.17g}\n")
    run_cli("metrics", tmp_path / "p.csv", "--target-sensitivity", 0.9, "--out", tmp_path / "m")
    cli = json.loads((tmp_path / "m" / "metrics.json").read_text())
    ours = histoscan.metrics(labels.tolist(), probs.tolist(), target_sensitivity=0.9)
    for k in ("auc", "accuracy", "average_precision", "log_loss", "operating_point", "intervals", "calibration"):
        assert ours[k] == cli[k], k


def test_metrics_refuses_what_it_cannot_score():
    with pytest.raises(ValueError, match="same length"):
        histoscan.metrics([0, 1, 1], [0.1, 0.9])
    with pytest.raises(ValueError, match="0 or 1"):
        histoscan.metrics([0, 2], [0.1, 0.9])
    with pytest.raises(ValueError, match="one class"):
        histoscan.metrics([1, 1], [0.1, 0.9])
    with pytest.raises(ValueError, match="at most one"):
        histoscan.metrics([0, 1], [0.1, 0.9], threshold=0.5, youden=True)


def test_scan_gives_the_summary_and_the_tiles(trained, tmp_path):
    model, _ = trained
    slide = tmp_path / "slide.tif"
    run_cli("synth-slide", slide, "--cols", 8, "--rows", 6, "--tumour", "2,1,3,2")
    s = model.scan(slide, tmp_path / "scan", stride=96)
    on_disk = json.loads((tmp_path / "scan" / "summary.json").read_text())
    assert s["tiles_scored"] == on_disk["tiles_scored"] > 0
    tiles = s["tiles"]
    assert len(tiles["x"]) == len(tiles["y"]) == len(tiles["probability"]) == s["tiles_scored"]
    grid = tiles["grid"]
    assert np.count_nonzero(~np.isnan(grid)) == s["tiles_scored"]
    rows = (tmp_path / "scan" / "tiles.csv").read_text().splitlines()
    assert len(rows) - 1 == s["tiles_scored"]
    with pytest.raises(TypeError, match="strid"):
        model.scan(slide, tmp_path / "other", strid=96)
    with pytest.raises(ValueError, match="--out"):
        model.scan(slide, tmp_path / "scan")  # not empty, no overwrite


def test_train_refuses_bad_flags_with_the_command_lines_message(synth, tmp_path):
    with pytest.raises(ValueError, match="--epochs"):
        histoscan.train(synth / "train", tmp_path / "r", epochs=0)
    with pytest.raises(ValueError, match="no-such-flag"):
        histoscan.train(synth / "train", tmp_path / "r", no_such_flag=1)
    with pytest.raises(ValueError, match="data and out"):
        histoscan.train(synth / "train")


def test_ctrl_c_stops_training_and_resume_finishes_it(synth, tmp_path):
    out = tmp_path / "run"

    def interrupt_once_training():
        while not (out / "history.csv").exists():  # written after the first epoch
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    t = threading.Thread(target=interrupt_once_training)
    t.start()
    with pytest.raises(KeyboardInterrupt):
        histoscan.train(synth / "train", out, model="seed-cnn", epochs=12, patience=12, batch=8, seed=5, threads=1,
                        quiet=True)
    t.join()
    assert (out / "resume.pt").exists()
    # Python's own Ctrl-C handling is back.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    model = histoscan.train(resume=out, quiet=True)
    assert model.metadata["model"] == "seed-cnn"
    assert len((out / "history.csv").read_text().splitlines()) == 13


def test_the_example_notebook_runs_the_seed_flow(synth, tmp_path):
    import subprocess
    import sys
    example = pathlib.Path(__file__).resolve().parents[2] / "examples" / "notebook.py"
    r = subprocess.run([sys.executable, str(example), str(synth), "--out", str(tmp_path), "--per-class", "40", "--epochs", "1"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "confusion matrix" in r.stdout and "AUC" in r.stdout
    assert (tmp_path / "roc.png").stat().st_size > 1000
    rows = (tmp_path / "submission.csv").read_text().splitlines()
    assert rows[0] == "id,label" and len(rows) == 25
