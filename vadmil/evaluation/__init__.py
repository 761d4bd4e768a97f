"""Test-time scoring and the metrics: snippet scores → frame scores → frame-level metrics."""
