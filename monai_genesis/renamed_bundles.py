"""The bundles renamed in 0.3, and the message that answers their old names.

``genesis_segmentation`` and ``genesis_classification`` fine-tune from any of the pretraining methods (Genesis,
MAE / S3D ResEnc, CSPR ResNet-18) and from nnssl weights, so 0.3 names them ``finetune_segmentation`` and
``finetune_classification``, as ``finetune_detection``. Their old folders hold only configs whose ``initialize`` calls
:py:func:`renamed_bundle`, so that a run of an old command stops before it reads anything and ends with the new
command; ``package`` and the other commands of ``python -m monai_genesis`` refuse the old folders the same way
(:py:func:`check_renamed_paths`).
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from monai_genesis.errors import GenesisInputError

__all__ = [
    "RENAMED_BUNDLES",
    "RENAMED_IN",
    "check_renamed_paths",
    "renamed_bundle",
    "renamed_command",
    "renamed_message",
    "renamed_path",
]

#: old bundle name -> its name since RENAMED_IN
RENAMED_BUNDLES = {
    "genesis_segmentation": "finetune_segmentation",
    "genesis_classification": "finetune_classification",
}
RENAMED_IN = "0.3"

# an old name as a whole path component: after the start, a separator, a quote, a bracket, a comma or '='
_OLD = re.compile(r"(?<![\w.-])(" + "|".join(RENAMED_BUNDLES) + r")(?=[/\\'\",\]]|$)")
# the programs whose command lines are written back: module path of argv[0] -> how the user started it
_PROGRAMS = {
    os.path.join("monai", "bundle", "__main__.py"): "python -m monai.bundle",
    os.path.join("monai_genesis", "__main__.py"): "python -m monai_genesis",
}
# what a config of the old bundle is run with, when the command line is not known
_FALLBACK = {
    "train": "['bundles/{new}/configs/train.json','configs/base/train.json']",
    "evaluate": "['bundles/{new}/configs/train.json','configs/base/train.json','bundles/{new}/configs/evaluate.json']",
    "inference": "bundles/{new}/configs/inference.json",
}
_PLAIN = re.compile(r"[\w@%+=:,./-]+")


def renamed_path(text: str) -> str:
    """``text`` (a path, or a list of paths as the command line gives it) with every old bundle folder renamed."""
    return _OLD.sub(lambda m: RENAMED_BUNDLES[m.group(1)], text)


def _shell_word(arg: str) -> str:
    """``arg`` as one shell word, in double quotes when it needs quoting and can have them (``"['a','b']"``)."""
    if _PLAIN.fullmatch(arg):
        return arg
    if not set(arg) & set('"$`\\!'):
        return f'"{arg}"'
    return shlex.quote(arg)


def renamed_command(argv: Sequence[str] | None = None) -> str | None:
    """The command line ``argv`` (default ``sys.argv``) with every path through an old bundle folder written with
    the bundle's new name; None when ``argv`` is not a command of ``monai.bundle`` or ``monai_genesis``.

    Args:
        argv: the program's arguments, ``argv[0]`` its ``__main__.py``.
    """
    argv = list(sys.argv if argv is None else argv)
    if not argv:
        return None
    program = next((p for suffix, p in _PROGRAMS.items() if os.path.normpath(argv[0]).endswith(suffix)), None)
    if program is None:
        return None
    if program == "python -m monai.bundle" and os.environ.get("TORCHELASTIC_RUN_ID"):
        program = "torchrun [your torchrun options] -m monai.bundle"
    return " ".join([program, *(_shell_word(renamed_path(a)) for a in argv[1:])])


def renamed_message(old: str, command: str) -> str:
    """The one line that answers the old name ``old``: the bundle's new name and the command to run instead.

    Args:
        old: a key of :py:data:`RENAMED_BUNDLES`.
        command: the command with the new name.
    """
    return (
        f"bundle {old} was renamed {RENAMED_BUNDLES[old]} in {RENAMED_IN} (it fine-tunes from every pretraining "
        f"method, not only Genesis); run: {command}"
    )


def renamed_bundle(old: str, config: str = "train") -> None:
    """Stop a run of a config of the old bundle ``old`` with its new name and the command to run instead: the
    ``initialize`` step of the configs left in ``bundles/OLD/configs/``.

    Args:
        old: a key of :py:data:`RENAMED_BUNDLES`.
        config: which config the run merged first (``train``, ``evaluate``, ``inference``), for the command given
            when the run was not started from the command line.

    Raises:
        GenesisInputError: always.
    """
    command = renamed_command()
    if command is None:
        config_file = _FALLBACK[config].format(new=RENAMED_BUNDLES[old])
        command = f"python -m monai.bundle run --config_file {_shell_word(config_file)}"
    raise GenesisInputError(renamed_message(old, command))


def _old_folders(value: str) -> list[tuple[str, Path, Path]]:
    """The old names in the paths of ``value`` (one path, ``--key=path`` or a list such as ``"['a','b']"``),
    each with its old folder and the whole path."""
    if value.startswith("--") and "=" in value:
        value = value.split("=", 1)[1]
    found = []
    for token in re.findall(r"[^\s'\",\[\]]+", value):
        match = _OLD.search(token)
        if match is not None:
            found.append((match.group(1), Path(token[: match.end()]), Path(token)))
    return found


def check_renamed_paths(values: Iterable[str], command: str | None = None) -> None:
    """Refuse the paths of ``values`` that lead into the folder an old bundle left (its configs, or the folder
    itself), or into an old folder that is gone; a file elsewhere in an old folder (a run's ``models/model.pt``) is
    let through.

    Args:
        values: the arguments of a command (paths, ``--key=path``, lists of paths).
        command: the command to suggest; default the command line with the new names (:py:func:`renamed_command`),
            else the values with the new names.

    Raises:
        GenesisInputError: naming the new bundle and the command.
    """
    values = [str(v) for v in values]
    for value in values:
        for old, folder, path in _old_folders(value):
            if (folder / "configs" / "metadata.json").is_file():
                continue  # a bundle of that name with its own metadata (an earlier release, a copy): not ours to stop
            inside_configs = folder / "configs" in path.parents or path == folder / "configs"
            if path == folder or inside_configs or not path.exists():
                suggestion = command or renamed_command() or " ".join(_shell_word(renamed_path(v)) for v in values)
                raise GenesisInputError(renamed_message(old, suggestion))
