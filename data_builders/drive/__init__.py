"""The `drive` TFDS builder (importing this package registers it)."""

from .drive_dataset_builder import Builder

__all__ = ["Builder"]
