"""The running fleet: supervisor, workers, meter actors, one module per reach mode, faults."""
