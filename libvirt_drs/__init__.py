"""libvirt-drs: wiring (CLI, configuration, database, service) around the pure balancer core."""

__version__ = "0.1.0"
