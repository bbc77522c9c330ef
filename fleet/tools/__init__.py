"""Tools beside the fleet: the push receiver (hes-sink), the onboarding export, the history backfill."""
