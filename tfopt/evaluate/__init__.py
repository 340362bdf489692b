"""Measurements: accuracy through LiteRT, sizes, weights read back from files, latency."""
