"""Exchange target over EWS. exchangelib is imported in this package and nowhere else."""

from .target import EwsTarget

__all__ = ["EwsTarget"]
