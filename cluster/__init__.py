"""Ray: the only layer that imports it. It imports trials, never orchestrator."""
