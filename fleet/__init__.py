"""fleet: the I/O side of cosem-fleet: supervisor, workers, meter actors, storage, metrics, CLI."""
