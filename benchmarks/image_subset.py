"""Copy the first images of each class of an ImageFolder tree into a smaller tree.

    python benchmarks/image_subset.py SOURCE DEST [--train-per-class 4000] [--test-per-class 1000]

SOURCE holds ``train/`` and ``test/`` (or class folders directly); DEST gets the same layout
with at most the given number of files per class, taken in sorted order. Used to carry a
part of the shared CIFAR-10 copy to a machine that cannot read it (docs/benchmarks.md,
"A GPU session").
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Sequence
from pathlib import Path


def copy_classes(source: Path, dest: Path, per_class: int) -> int:
    """Copy up to ``per_class`` files of every class folder of ``source``; returns the count."""
    copied = 0
    for class_dir in sorted(p for p in source.iterdir() if p.is_dir()):
        target = dest / class_dir.name
        target.mkdir(parents=True, exist_ok=True)
        for image in sorted(p for p in class_dir.iterdir() if p.is_file())[:per_class]:
            shutil.copy2(image, target / image.name)
            copied += 1
    return copied


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--train-per-class", type=int, default=4000)
    parser.add_argument("--test-per-class", type=int, default=1000)
    args = parser.parse_args(argv)
    if not args.source.is_dir():
        parser.error(f"{args.source} is not a folder")
    splits = [s for s in ("train", "test") if (args.source / s).is_dir()]
    if splits:
        limits = {"train": args.train_per_class, "test": args.test_per_class}
        for split in splits:
            count = copy_classes(args.source / split, args.dest / split, limits[split])
            print(f"{split}: {count} images -> {args.dest / split}")
    else:
        count = copy_classes(args.source, args.dest, args.train_per_class)
        print(f"{count} images -> {args.dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
