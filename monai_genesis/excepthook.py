"""Importing this module installs :py:func:`monai_genesis.errors.install_excepthook`: a bundle run stopped by bad
input ends with the project's message. The bundles' configs import it in ``imports``, which MONAI runs before
any other item."""

from monai_genesis.errors import install_excepthook

install_excepthook()
