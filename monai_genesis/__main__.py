"""Command line entry point: ``python -m monai_genesis COMMAND --help``.

Commands: ``preview`` (a PNG grid of the Genesis corruptions of one volume) and ``package`` (a bundle as a
Model Zoo release zip).
"""

import fire

from monai_genesis.packaging import package
from monai_genesis.visualize import preview


def main():
    fire.Fire({"preview": preview, "package": package})


if __name__ == "__main__":
    main()
