"""Self-supervised and transfer pretraining for 3D medical images, built on MONAI: Models Genesis, masked image
modelling for 3D CNNs (MAE and S3D), and CSPR (supervised 3D pretraining from 2D photos)."""

__version__ = "0.3.0"
