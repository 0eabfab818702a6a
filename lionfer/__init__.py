"""lionfer: semi-supervised facial expression recognition under ambiguous labels (LION)."""

__version__ = "0.1.0"
