"""Judgements of a wrapped model: what its matmuls compute in, how faithful it is to float32, whether it
fits its memory budget, whether its sharded program spans its devices and agrees with one device."""
