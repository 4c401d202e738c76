"""Command line entry point: ``python -m monai_genesis COMMAND --help``.

Commands: ``preview`` (a PNG grid of the Genesis corruptions of one volume), ``package`` (a bundle as a
Model Zoo release zip), ``prepare`` (a preprocessed volume store for pretraining) and ``export`` (a ResEnc model as
an nnssl / nnU-Net checkpoint).

A path into the folder a renamed bundle left behind (``bundles/genesis_segmentation``) stops any command with the
bundle's new name and the command to run instead, and input errors end the command on their message.
"""

import sys

import fire

from monai_genesis.data.store import prepare_command
from monai_genesis.errors import install_excepthook
from monai_genesis.interop.nnssl import export_command
from monai_genesis.packaging import package
from monai_genesis.renamed_bundles import check_renamed_paths
from monai_genesis.visualize import preview


def main():
    install_excepthook()
    check_renamed_paths(sys.argv[1:])
    fire.Fire({"preview": preview, "package": package, "prepare": prepare_command, "export": export_command})


if __name__ == "__main__":
    main()
