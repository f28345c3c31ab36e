"""Realistic Flax NNX inference models the suites exercise."""
