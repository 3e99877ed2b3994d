"""Blameless postmortems built from the incident timeline (see docs/postmortems.md)."""
