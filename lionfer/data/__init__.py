"""Dataset readers, splits, transforms and loaders."""
