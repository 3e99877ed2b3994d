"""Impact in chain units: validators affected, missed attestations and proposals, how far the
beacon node's head lags and how late finality is, sampled into an open incident's timeline."""
