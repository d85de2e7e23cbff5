"""The `knee` TFDS builder (importing this package registers it)."""

from .knee_dataset_builder import Builder

__all__ = ["Builder"]
