"""`vadmil score`: new videos → per-frame anomaly scores, offline or streaming."""
