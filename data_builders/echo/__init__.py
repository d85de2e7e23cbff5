"""The `echo` TFDS builder (importing this package registers it)."""

from .echo_dataset_builder import Builder

__all__ = ["Builder"]
