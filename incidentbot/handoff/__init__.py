"""The on-call handoff: what the outgoing on-call hands to the incoming one, per rotation."""
