"""Data side: readers of raw files, splits, the prepared-dataset store and batching."""
