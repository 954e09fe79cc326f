"""Training runtime: the loop, the optimizer step, progress reporting."""
