"""The performance-regression suites: run on purpose with ``pytest --jaxperf suites/``."""
