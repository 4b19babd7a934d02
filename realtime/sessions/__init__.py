"""Many sessions on one server: the hub, the shared scorer and speech services, the load governor."""
