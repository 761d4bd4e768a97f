"""`vadmil demo`: generated street-scene videos through extract, sweep, report and score."""
