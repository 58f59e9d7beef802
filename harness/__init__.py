"""t2-harness: repeated-sampling evaluation, unbiased pass@k, inference cost, T² scaling laws."""

__version__ = "0.1.0"
