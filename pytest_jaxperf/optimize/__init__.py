"""Transformations of a model: mixed precision, int8 quantization, memory savers, batching, the dynamic
batcher, and ``variant.build_variant``, which applies a test case's."""
