"""Models Genesis self-supervised pretraining for 3D medical images, built on MONAI."""

__version__ = "0.3.0"
