"""Objects from their JSON form `{"type": <class name>, **arguments}`: parameters, samplers and
pruners, as saved with a study or sent to the REST API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def build(kinds: Mapping[str, type], spec: Any, what: str) -> Any:
    """`kinds[spec["type"]](**rest of spec)`, or a ValueError that names the rule and echoes
    `spec` (also for a constructor's own TypeError or ValueError)."""
    if not isinstance(spec, Mapping) or spec.get("type") not in kinds:
        raise ValueError(f'A {what} is {{"type": one of {sorted(kinds)}, ...its arguments}}. '
                         f"Received: {spec!r}")  # fmt: skip
    args = {k: v for k, v in spec.items() if k != "type"}
    try:
        return kinds[spec["type"]](**args)
    except (TypeError, ValueError) as e:
        raise ValueError(f"Invalid {what} {dict(spec)!r}: {e}") from e
