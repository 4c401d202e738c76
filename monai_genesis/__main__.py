"""Command line entry point: ``python -m monai_genesis COMMAND --help``."""

import fire


def preview(*args, **kwargs):
    """Write a PNG grid of the Genesis corruptions of one volume (see ``monai_genesis.visualize.preview``)."""
    from monai_genesis.visualize import preview as _preview

    return _preview(*args, **kwargs)


def package(*args, **kwargs):
    """Pack a bundle into a Model Zoo release zip (see ``monai_genesis.packaging.package``)."""
    from monai_genesis.packaging import package as _package

    return _package(*args, **kwargs)


def main():
    fire.Fire({"preview": preview, "package": package})


if __name__ == "__main__":
    main()
