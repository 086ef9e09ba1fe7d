"""Tasks built into core (registered as a built-in plugin through the same hooks)."""
