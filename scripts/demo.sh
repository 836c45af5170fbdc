#!/usr/bin/env bash
# The main job on the built-in default: real PatchCamelyon patches from samples/pcam (in the
# repository, CC0), inspect -> train -> evaluate (beside the built-in model) -> predict, then a
# slide made of real patches from other slides scanned into a heatmap. Results go to build/demo/.
set -euo pipefail
bin=${HISTOSCAN:-build/histoscan}
out=${DEMO_DIR:-build/demo}
sample=${SAMPLE:-samples/pcam}
threads=${THREADS:-0}
rm -rf "$out"
mkdir -p "$out"
echo "== inspect: $sample, 1,400 real PatchCamelyon patches (CC0; $sample/README.md)"
"$bin" inspect "$sample/train"
echo "== train: the default recipe on $sample/train (1,000 patches; a quarter held out to pick the epoch)"
"$bin" train "$sample/train" --out "$out/run" --threads "$threads"
echo "== evaluate on $sample/test (400 patches from other slides): this run's model beside the built-in one"
"$bin" evaluate "$out/run/best.pt" pcam-resnet "$sample/test" --out "$out/eval" --threads "$threads"
echo "== predict: submission.csv for $sample/test with the built-in model (no checkpoint given)"
"$bin" predict "$sample/test" --out "$out/submission.csv" --threads "$threads"
echo "== scan: a pyramidal TIFF slide of real patches from $sample/test (tumour block known) into a heatmap"
"$bin" synth-slide "$out/slide.tif" --from "$sample/test" --cols 16 --rows 12 --tumour 6,4,5,4
"$bin" scan "$out/slide.tif" --out "$out/scan" --threads "$threads"
echo
echo "results:"
echo "  $out/run/       best.pt, last.pt, history.csv, config.json"
echo "  $out/eval/      roc.png (both models), comparison.json; run-best/ and pcam-resnet/: metrics.json, plots, report.html (open it in a browser: ROC, mistakes)"
echo "  $out/submission.csv"
echo "  $out/scan/      heatmap.png, tissue.png, tiles.csv, tumour.geojson (QuPath), summary.json; truth: $out/slide.truth.json"
