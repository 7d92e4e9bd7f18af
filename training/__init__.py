"""Training tools for platemask's plate model: recovery, data set, training (not shipped to workers)."""
