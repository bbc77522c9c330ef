"""Errors shown to the user of the `fleet` command."""

from __future__ import annotations


class FleetError(Exception):
    """A problem the user can fix, shown as one line (``str(e)``) with a non-zero exit."""
