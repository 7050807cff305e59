"""Similarity search: model weights, per-model reduction, source alignment, index and vote."""
