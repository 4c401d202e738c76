"""Command line entry point: ``python -m monai_genesis COMMAND --help``.

Commands: ``preview`` (a PNG grid of the Genesis corruptions of one volume), ``package`` (a bundle as a
Model Zoo release zip) and ``prepare`` (a preprocessed volume store for pretraining).
"""

import fire

from monai_genesis.data.store import prepare_command
from monai_genesis.packaging import package
from monai_genesis.visualize import preview


def main():
    fire.Fire({"preview": preview, "package": package, "prepare": prepare_command})


if __name__ == "__main__":
    main()
