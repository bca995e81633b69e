"""``kiln.datasets``: bundled and downloadable datasets (defined in ``kiln.data``)."""

from kiln.data.datasets import *  # noqa: F403
from kiln.data.datasets import __all__  # noqa: F401
