"""The optimizations themselves, as plain library code usable without pytest."""
