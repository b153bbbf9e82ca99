"""The lab cluster: N libvirtd "hosts" on one machine with real, load-controlled QEMU guests."""

from drs.lab.lab import Lab
from drs.lab.spec import LabSpec, VmSpec, build

__all__ = ["Lab", "LabSpec", "VmSpec", "build"]
