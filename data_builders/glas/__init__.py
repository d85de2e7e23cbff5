"""The `glas` TFDS builder (importing this package registers it)."""

from .glas_dataset_builder import Builder

__all__ = ["Builder"]
