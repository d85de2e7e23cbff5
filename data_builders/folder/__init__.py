"""The `folder` TFDS builder (importing this package registers it)."""

from .folder_dataset_builder import Builder

__all__ = ["Builder"]
