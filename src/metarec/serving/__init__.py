"""The HTTP service: app factory, event store and online state."""
