"""``kiln.callbacks``: what ``fit(callbacks=[...])`` takes (defined in ``kiln.train``)."""

from kiln.train.callbacks import *  # noqa: F403
from kiln.train.callbacks import __all__  # noqa: F401
