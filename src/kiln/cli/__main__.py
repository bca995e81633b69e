"""``python -m kiln.cli``: the ``kiln`` command (how kiln relaunches itself under torchrun).

Running ``python -m kiln.cli._main`` instead made Python warn, in every process, that the
module was imported (by this package) before it ran as ``__main__``.
"""

from kiln.cli._main import main

raise SystemExit(main())
