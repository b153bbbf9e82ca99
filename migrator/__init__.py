"""Live migration of VMs between libvirt hosts under shared concurrency limits."""
