"""kiln.server: the REST API (FastAPI) and dashboard over a tracking store.

Needs the ``server`` extra: ``pip install 'kiln[server]'``.
"""

from kiln.server._app import create_app
from kiln.server._serve import serve

__all__ = ["create_app", "serve"]
