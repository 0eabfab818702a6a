"""The data pipeline: splits, transforms, loaders, caches, checks and noise; the dataset readers
are in lionfer.data.datasets."""
