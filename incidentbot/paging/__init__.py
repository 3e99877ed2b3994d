"""Paging on-call: the PagerDuty adapter and the paging policy."""
