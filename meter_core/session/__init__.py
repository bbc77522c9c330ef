"""The session floor: the association state machine, its services, and the journal of what changed a meter."""
