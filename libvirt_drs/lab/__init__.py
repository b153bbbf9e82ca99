"""The lab cluster: N libvirtd "hosts" on one machine with real, load-controlled QEMU guests."""

from libvirt_drs.lab.lab import Lab
from libvirt_drs.lab.spec import LabSpec, VmSpec, build

__all__ = ["Lab", "LabSpec", "VmSpec", "build"]
