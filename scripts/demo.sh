#!/usr/bin/env bash
# The main job on the built-in default: synthetic Kaggle-layout data, then
# inspect -> train -> evaluate -> predict, then a synthetic whole slide scanned into a
# heatmap. Results go to build/demo/.
set -euo pipefail
bin=${HISTOSCAN:-build/histoscan}
out=${DEMO_DIR:-build/demo}
threads=${THREADS:-0}
rm -rf "$out"
mkdir -p "$out"
echo "== synth: a small synthetic dataset in Kaggle's layout"
"$bin" synth "$out/data" --train 2000 --test 400
echo "== inspect"
"$bin" inspect "$out/data"
echo "== train (the default recipe cut to 4 epochs, 25% of the patches held out for validation)"
"$bin" train "$out/data" --out "$out/run" --epochs 4 --threads "$threads"
echo "== evaluate on the held-out test patches (their labels are in test_labels.csv)"
"$bin" evaluate "$out/run/best.pt" "$out/data/test" --labels "$out/data/test_labels.csv" --out "$out/eval" --threads "$threads"
echo "== predict: Kaggle submission for the test folder"
"$bin" predict "$out/run/best.pt" "$out/data/test" --out "$out/submission.csv" --threads "$threads"
echo "== scan: a whole-slide test image (pyramidal TIFF, tumour block known) into a heatmap"
"$bin" synth-slide "$out/slide.tif"
"$bin" scan "$out/run/best.pt" "$out/slide.tif" --out "$out/scan" --threads "$threads"
echo
echo "results:"
echo "  $out/run/       best.pt, last.pt, history.csv, config.json"
echo "  $out/eval/      metrics.json, predictions.csv, plots, report.html (open it in a browser)"
echo "  $out/submission.csv"
echo "  $out/scan/      heatmap.png, tissue.png, tiles.csv, tumour.geojson (QuPath), summary.json; truth: $out/slide.truth.json"
