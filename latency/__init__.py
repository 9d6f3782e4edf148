"""hwnas.latency: per-layer latency tables, targets, prediction and validation."""
