"""Measurement: operation counts, memory and latency of a model on an input."""
