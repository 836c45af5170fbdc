#!/usr/bin/env python3
"""Writes samples/pcam/ (the real patches `make run` trains on) from PatchCamelyon class folders.

Usage: scripts/make_pcam_sample.py ../shared/data/pcam-subset samples/pcam

Takes TRAIN_PER_CLASS patches of each class from SUBSET/train and TEST_PER_CLASS from
SUBSET/valid (PCam's train and valid splits come from different slides, so the sample's test
patches share no slide with its train patches), evenly spaced over the files sorted by name, and
copies them byte for byte. Running it again gives the same files.
"""
import shutil
import sys
from pathlib import Path

TRAIN_PER_CLASS = 500
TEST_PER_CLASS = 200


def evenly_spaced(files, count):
    if len(files) < count:
        sys.exit(f"make_pcam_sample.py: {len(files)} files where {count} are needed")
    step = len(files) / count
    return [files[int(i * step)] for i in range(count)]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[2])
    subset, out = Path(sys.argv[1]), Path(sys.argv[2])
    for side, source, count in (("train", "train", TRAIN_PER_CLASS), ("test", "valid", TEST_PER_CLASS)):
        for label in ("0", "1"):
            files = sorted((subset / source / label).glob("*.jpg"))
            dest = out / side / label
            if dest.exists():
                shutil.rmtree(dest)
            dest.mkdir(parents=True)
            for f in evenly_spaced(files, count):
                shutil.copyfile(f, dest / f.name)
    print(f"wrote {out}: train {2 * TRAIN_PER_CLASS}, test {2 * TEST_PER_CLASS} patches")


if __name__ == "__main__":
    main()
