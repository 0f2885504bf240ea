"""Adapters: the outside world (directory, mail sources, targets) behind our own types."""
