"""Disaster recovery: replicas of protected VMs on a recovery site (docs/replication.md)."""
