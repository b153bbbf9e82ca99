"""Collectors: poll libvirt hosts, turn counters into rates (no database code here)."""
