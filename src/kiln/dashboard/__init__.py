"""kiln.dashboard: the web pages ``kiln.server`` serves (static HTML/JS/CSS in ``static/``).

The pages talk only to the REST API (``/v1``). The charting library (uPlot, MIT) is vendored
in ``static/vendor`` by ``scripts/vendor_dashboard_assets.sh``, so the dashboard works offline.
"""

from pathlib import Path

STATIC = Path(__file__).with_name("static")

__all__ = ["STATIC"]
