"""High availability: restart the protected VMs of a failed host on the others.

The leading `drs serve` runs the HA job every collector interval (ha.job): a host that
has not answered for `ha.failure_intervals` intervals is suspected and fenced with its
`fence_command` (ha.fence); only after the fence succeeded are its HA VMs defined and
started elsewhere, highest priority first, placed by the balancer's own placement
(ha.decide); what does not fit waits and says why. A host whose fence fails is never
restarted from, and that is loud (log, metric, alert). A fenced host stays out (in
maintenance) until an operator clears it (`drs ha clear`). libvirt's lock manager is the
last guard: it refuses to start a disk that another QEMU holds.
"""
