"""Pack a bundle into a release zip in the layout of the MONAI Model Zoo, and record it in ``model_info.json``.

A release zip holds one top-level folder named after the bundle, the weights when they are present, and the
large files already resolved, so that ``python -m monai.bundle download --name NAME --version VERSION --source
github --repo OWNER/REPO/TAG`` fetches and unpacks it like any Model Zoo bundle. A bundle's ``train.json`` that is a
recipe over the shared base (``configs/base/train.json``) is released merged with it, so that the unpacked bundle
runs with ``--config_file configs/train.json`` alone. A release never carries what a run leaves in the bundle
folder: a volume store, logs, pictures, resume states, images; what was left out is logged.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import zipfile
from collections.abc import Sequence
from fnmatch import fnmatch
from pathlib import Path

from monai.apps.utils import check_hash
from monai.bundle import ConfigParser

from monai_genesis.renamed_bundles import check_renamed_paths, renamed_command, renamed_path
from monai_genesis.utils import file_digest

__all__ = [
    "bundle_files",
    "flattened_train_config",
    "left_out_files",
    "package",
    "read_large_files",
    "shared_fragments",
    "train_config_files",
    "write_bundle_zip",
]

logger = logging.getLogger(__name__)

LARGE_FILE_NAMES = ("large_files.yml", "large_files.yaml", "large_files.json")
# run outputs, caches, editor files and ignite's intermediate checkpoints ("name_epoch=3.pt") stay out of a release,
# and so does anything that may hold patient data: a volume store (preprocessed scans, source paths), images
DEFAULT_EXCLUDE = (
    "__pycache__",
    "*.pyc",
    ".*",
    "runs",
    "eval",
    "results",
    "store",
    "store.json",
    "phantoms",
    "*.tmp",
    "*.part",
    "*=*.pt",
    "*.nii",
    "*.nii.gz",
    "*.npy",
    "*.npz",
    "*.dcm",
    "*.mha",
    "*.mhd",
    "*.nrrd",
    "*.raw",
)
# of a bundle's models/ folder, a release carries the released weights only (and the large files it lists)
RELEASED_MODELS = ("model.pt", "model.ts")
# the shared base a bundle's train.json is a recipe over, relative to the shared fragments' folder
BASE_TRAIN = Path("base") / "train.json"
# the earliest time a zip header can hold; any fixed value makes the archive reproducible
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
# MONAI splits release asset names on this pattern to find a bundle's name and version
_ASSET_NAME_SPLIT = re.compile(r"_v\d*.")


def read_large_files(bundle: str | os.PathLike) -> tuple[Path | None, list[dict]]:
    """Return the bundle's ``large_files.{yml,yaml,json}`` file and its entries (``path``, ``url``, hashes).

    Args:
        bundle: folder of the bundle.
    """
    found = [Path(bundle) / n for n in LARGE_FILE_NAMES if (Path(bundle) / n).is_file()]
    if not found:
        return None, []
    if len(found) > 1:
        raise ValueError(f"bundle {bundle} has several large files lists {[f.name for f in found]}; keep only one.")
    content = ConfigParser.load_config_file(found[0])
    entries = content.get("large_files") if isinstance(content, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "path" in e for e in entries):
        raise ValueError(f"{found[0]} must hold a list 'large_files' of entries with at least 'path' and 'url'.")
    return found[0], entries


def _large_file_present(bundle: Path, entry: dict) -> bool:
    """Whether a large file is in the bundle; raises when it is there but does not match its hash."""
    path = bundle / entry["path"]
    if not path.is_file():
        return False
    hash_val = entry.get("hash_val") or None
    hash_type = entry.get("hash_type") or "sha256"  # the default of monai.apps.download_url
    if not check_hash(path, hash_val, hash_type):
        raise ValueError(
            f"{path} does not match the {hash_type} hash {hash_val} given in the large files list; delete it and run "
            f"`python -m monai.bundle download_large_files --bundle_path {bundle}` to fetch the right file."
        )
    return True


def _excluded(rel: Path, patterns: Sequence[str]) -> bool:
    return any(fnmatch(part, p) for part in rel.parts for p in patterns)


def _in_volume_store(root: Path, rel: Path) -> bool:
    """Whether ``rel`` lies in a volume store preparation (a folder with the store's ``settings.json``), wherever the
    store was put: its records name the source scans."""
    for depth in range(1, len(rel.parts)):
        settings = root.joinpath(*rel.parts[:depth], "settings.json")
        if settings.is_file():
            try:
                values = json.loads(settings.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(values, dict) and {"format", "intensity", "dtype"} <= set(values):
                return True
    return False


def shared_fragments(bundle: str | os.PathLike) -> Path | None:
    """The folder of the config fragments that the bundles' docs tell users to merge (``configs/`` of the project
    that holds ``bundles/NAME``), or None when the bundle does not sit in such a project."""
    candidate = Path(bundle).resolve().parent.parent / "configs"
    return candidate if Path(bundle).resolve().parent.name == "bundles" and candidate.is_dir() else None


def _fragment_files(fragments: Path, name: str, bundle: Path, patterns: Sequence[str]) -> list[tuple[Path, str]]:
    files = []
    for path in sorted(fragments.rglob("*")):
        rel = path.relative_to(fragments)
        if not path.is_file() or path.suffix not in (".json", ".md") or _excluded(rel, patterns):
            continue
        if rel.parts[0] == BASE_TRAIN.parts[0]:
            continue  # merged into the release's train.json
        if (bundle / "configs" / rel).exists():
            raise ValueError(
                f"{bundle / 'configs' / rel} has the name of the shared fragment {path}; rename one of them, since a "
                "release holds both in its configs/ folder."
            )
        files.append((path, f"{name}/configs/{rel.as_posix()}"))
    return files


def flattened_train_config(train: str | os.PathLike, base: str | os.PathLike) -> dict | None:
    """The bundle's ``train.json`` merged with the shared base, as ``--config_file "['train.json','base/train.json']"``
    merges them; None when ``train`` is not a recipe over the base (it defines its own ``train#trainer``).

    Args:
        train: the bundle's ``configs/train.json``.
        base: the shared base, ``configs/base/train.json`` of the project.
    """
    own = ConfigParser.load_config_file(train)
    if not isinstance(own.get("train"), dict) or "trainer" in own["train"]:
        return None
    merged = ConfigParser.load_config_files([train, base])
    # the knobs every run sets (bundle_root, device, seed, ...) first and the workflow's steps last, as in Model Zoo
    # configs
    steps = ["initialize", "run", "finalize"]
    base_keys = [k for k in ConfigParser.load_config_file(base) if not k.startswith("+") and "#" not in k]
    order = ["imports"] + [k for k in base_keys if k not in own and k not in steps] + list(own)
    order = [k for k in order if k not in steps] + [k for k in merged if k not in order and k not in steps] + steps
    return {k: merged[k] for k in order if k in merged}


def train_config_files(bundle: str | os.PathLike) -> list[str]:
    """The config files a training run of ``bundle`` merges, in order: its ``configs/train.json``, then the shared
    base ``configs/base/train.json`` of the project when the bundle's file is a recipe over it (it has no
    ``train#trainer`` of its own). The ``--config_file`` list of a run, before any fragment.

    Args:
        bundle: folder of the bundle (``bundles/NAME`` of the project, or an unpacked release).
    """
    train = Path(bundle) / "configs" / "train.json"
    folder = shared_fragments(bundle)
    base = folder / BASE_TRAIN if folder is not None else None
    own = ConfigParser.load_config_file(train)
    recipe = isinstance(own.get("train"), dict) and "trainer" not in own["train"]
    return [str(train)] + ([str(base)] if recipe and base is not None and base.is_file() else [])


def left_out_files(bundle: str | os.PathLike, packed: Sequence[tuple]) -> list[str]:
    """The files of the bundle folder that a release of it does not carry (paths relative to the bundle)."""
    bundle = Path(bundle)
    name = bundle.resolve().name
    kept = {arcname[len(name) + 1 :] for _, arcname in packed}
    return sorted(
        p.relative_to(bundle).as_posix()
        for p in bundle.rglob("*")
        if (p.is_file() or p.is_symlink()) and p.relative_to(bundle).as_posix() not in kept
    )


def _summary(paths: Sequence[str], shown: int = 8) -> str:
    """``store/ (120 files), models/model_final.pt, ...``: folders counted, at most ``shown`` entries."""
    groups: dict[str, int] = {}
    for path in paths:
        top = path.split("/")[0] + "/" if "/" in path and path.split("/")[0] != "models" else path
        groups[top] = groups.get(top, 0) + 1
    parts = [f"{k} ({v} files)" if k.endswith("/") else k for k, v in groups.items()]
    return ", ".join(parts[:shown]) + (f" and {len(parts) - shown} more" if len(parts) > shown else "")


def bundle_files(
    bundle: str | os.PathLike, exclude: Sequence[str] | str = (), fragments: str | os.PathLike | None = "auto"
) -> list[tuple[Path | bytes, str]]:
    """List the files of a release of ``bundle`` as sorted ``(source, name in the zip)`` pairs.

    Large files that are present (and match their hash) are included and the large files list is then left out,
    as in Model Zoo releases; when any large file is missing, the list is kept so that users can fetch it.
    The shared config fragments (``configs/quick.json``, ``configs/mri.json``, ``configs/multi_gpu_train.json``,
    ``configs/networks/*.json``, ...) go into the release's ``configs/`` folder under the same relative names, so that
    a downloaded bundle carries every file its docs tell its users to merge: ``configs/quick.json`` is then the same
    path from the project's root and from the unpacked bundle's. A ``train.json`` that is a recipe over the shared
    base (``configs/base/train.json``) is released merged with it (the source is then the merged JSON as bytes),
    and the base itself is not packed. Of ``models/`` only the released weights (``model.pt``, ``model.ts``) and
    the large files go in.

    Args:
        bundle: folder of the bundle; its folder name is the bundle name and the zip's top-level folder.
        exclude: glob patterns (or one pattern), matched against every path component, left out in addition to
            ``DEFAULT_EXCLUDE`` (caches, hidden files, ``runs``, ``eval``, ``results`` and ``store`` folders, images
            and arrays that may hold patient data, intermediate checkpoints such as
            ``resume_checkpoint_epoch=3.pt``); the large files are never left out.
        fragments: folder of the shared fragments; ``"auto"`` finds ``configs/`` of the project holding
            ``bundles/NAME`` (:py:func:`shared_fragments`); None packs none (and merges no base).
    """
    bundle = Path(bundle)
    name = bundle.resolve().name
    patterns = tuple(DEFAULT_EXCLUDE) + ((exclude,) if isinstance(exclude, str) else tuple(exclude))
    large_list, entries = read_large_files(bundle)
    large_paths = {Path(e["path"]) for e in entries}
    missing = [e["path"] for e in entries if not _large_file_present(bundle, e)]
    if missing:
        logger.warning(
            f"large files {missing} of {name} are not downloaded; the release keeps {large_list.name} so that users "
            "fetch them with `python -m monai.bundle download_large_files`."
        )
    folder = shared_fragments(bundle) if fragments == "auto" else (Path(fragments) if fragments is not None else None)
    base = folder / BASE_TRAIN if folder is not None and (folder / BASE_TRAIN).is_file() else None
    files: list[tuple[Path | bytes, str]] = []
    for path in bundle.rglob("*"):
        rel = path.relative_to(bundle)
        if not path.is_file() or path.is_symlink():
            continue
        if rel not in large_paths and (
            _excluded(rel, patterns)
            or (rel.parts[0] == "models" and rel.as_posix()[7:] not in RELEASED_MODELS)
            or _in_volume_store(bundle, rel)
        ):
            continue
        if large_list is not None and not missing and rel == Path(large_list.name):
            continue
        source: Path | bytes = path
        if rel == Path("configs", "train.json") and base is not None:
            merged = flattened_train_config(path, base)
            if merged is not None:
                source = (json.dumps(merged, indent=4) + "\n").encode()
        files.append((source, f"{name}/{rel.as_posix()}"))
    if folder is not None:
        files += _fragment_files(folder, name, bundle, patterns)
    return sorted(files, key=lambda f: f[1])


def write_bundle_zip(files: Sequence[tuple[Path | bytes, str]], filepath: str | os.PathLike) -> None:
    """Write ``files`` (pairs of source and name in the zip) to a zip whose bytes depend only on their content.

    Args:
        files: ``(source, name in the zip)`` pairs, written in the given order; a source is a file's path or the
            content itself as bytes.
        filepath: the zip to write.
    """
    with zipfile.ZipFile(filepath, "w") as zf:
        for src, arcname in files:
            info = zipfile.ZipInfo(arcname, date_time=ZIP_DATE_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # "unix", whatever the platform packing it, so the permission bits mean the same
            info.external_attr = 0o100644 << 16
            if isinstance(src, bytes):
                info.file_size = len(src)
                zf.writestr(info, src)
                continue
            info.file_size = Path(src).stat().st_size
            with open(src, "rb") as f_in, zf.open(info, "w") as f_out:
                for chunk in iter(lambda: f_in.read(1 << 20), b""):
                    f_out.write(chunk)


def _check_metadata(bundle: Path) -> str:
    """Return the bundle's version after checking it against the changelog of ``configs/metadata.json``."""
    meta_file = bundle / "configs" / "metadata.json"
    if not meta_file.is_file():
        raise ValueError(f"{bundle} is not a bundle: {meta_file} is missing.")
    with open(meta_file) as f:
        meta = json.load(f)
    version = meta.get("version")
    if not isinstance(version, str) or not version or re.search(r"[\s/]", version):
        raise ValueError(f"{meta_file} needs a 'version' such as \"0.1.0\", got {version!r}.")
    changelog = meta.get("changelog")
    if not isinstance(changelog, dict) or version not in changelog:
        raise ValueError(
            f"version {version} of {meta_file} has no entry in its 'changelog'; add "
            f'"{version}": "what changed" as the first entry of "changelog" before packing.'
        )
    if next(iter(changelog)) != version:
        logger.warning(f"the changelog of {meta_file} does not list version {version} first (newest first).")
    return version


def package(
    bundle: str | os.PathLike,
    out: str | os.PathLike = "dist",
    repo: str | None = None,
    overwrite: bool = False,
    exclude: Sequence[str] | str = (),
    fragments: str | os.PathLike | None = "auto",
) -> str:
    """Write the bundle's Model Zoo release zip ``out/NAME_vVERSION.zip`` and record it in ``out/model_info.json``.

    Typical usage::

        python -m monai_genesis package --bundle bundles/genesis_pretrain --out dist/ --repo OWNER/REPO/TAG

    The zip has one top-level folder ``NAME/`` (the bundle's folder name), sorted entries and fixed timestamps, so
    packing the same files twice gives the same bytes. ``model_info.json`` maps ``NAME_vVERSION`` to the zip's
    ``checksum`` (SHA-1) and ``source`` (its download address), as ``models/model_info.json`` of the Model Zoo.

    Args:
        bundle: folder of the bundle, with ``configs/metadata.json`` (whose ``version`` must be a key of its
            ``changelog``) and ``LICENSE``; the folder a renamed bundle left behind (``bundles/genesis_segmentation``)
            is refused with the command for the new name.
        out: folder for the zip and ``model_info.json``; created when missing.
        repo: ``OWNER/REPO/TAG`` of the GitHub release the zip will be attached to; the ``source`` recorded is then
            ``https://github.com/OWNER/REPO/releases/download/TAG/NAME_vVERSION.zip``. Without it, the ``source``
            is the zip's ``file://`` address, usable on this machine only.
        overwrite: replace an existing zip of the same name whose content differs; by default that is an error.
        exclude: more glob patterns of files or folders to leave out (see ``bundle_files``).
        fragments: folder of the shared config fragments packed into the release's ``configs/`` (see
            ``bundle_files``); ``"auto"`` takes the project's ``configs/``, None packs none.

    Returns:
        the path of the zip written.
    """
    bundle = Path(bundle)
    new_command = renamed_command() or f"python -m monai_genesis package --bundle {renamed_path(str(bundle))}"
    check_renamed_paths([str(bundle)], command=new_command)
    if not bundle.is_dir():
        raise ValueError(f"bundle folder {bundle} does not exist.")
    name = bundle.resolve().name
    if _ASSET_NAME_SPLIT.split(f"{name}_v0.0.0")[0] != name:
        raise ValueError(f"bundle name {name!r} contains '_v', which MONAI's download reads as a version; rename it.")
    if repo is not None and (len(str(repo).split("/")) != 3 or "" in str(repo).split("/")):
        raise ValueError(f"repo should be OWNER/REPO/TAG as for `monai.bundle download --source github`, got {repo!r}.")
    if not (bundle / "LICENSE").is_file():
        raise ValueError(f"{bundle / 'LICENSE'} is missing; the Model Zoo requires a licence in every bundle.")
    version = _check_metadata(bundle)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    asset = f"{name}_v{version}"
    zip_path = out / f"{asset}.zip"
    files = bundle_files(bundle, exclude=exclude, fragments=fragments)
    left_out = left_out_files(bundle, files)
    if left_out:
        logger.warning(f"left out of the release of {name} (run outputs, stores, data): {_summary(left_out)}.")
    fd, tmp = tempfile.mkstemp(prefix=f".{asset}.", suffix=".zip", dir=out)
    os.close(fd)
    # mkstemp makes the file readable by its owner only; a release is for everyone to read
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        write_bundle_zip(files, tmp)
        checksum = file_digest(tmp, "sha1")
        if zip_path.exists() and file_digest(zip_path, "sha1") != checksum and not overwrite:
            raise FileExistsError(
                f"{zip_path} exists with different content; bump the version in metadata.json (and its changelog) "
                "or pass overwrite=True (`--overwrite`) to replace it."
            )
        os.replace(tmp, zip_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)

    if repo is not None:
        owner, repo_name, tag = str(repo).split("/")
        source = f"https://github.com/{owner}/{repo_name}/releases/download/{tag}/{asset}.zip"
    else:
        source = zip_path.resolve().as_uri()
    info_path = out / "model_info.json"
    info = {}
    if info_path.is_file():
        with open(info_path) as f:
            info = json.load(f)
    info[asset] = {"checksum": checksum, "source": source}
    with open(info_path, "w") as f:
        json.dump(dict(sorted(info.items())), f, indent=4)
        f.write("\n")
    logger.info(f"packed {len(files)} files of {bundle} into {zip_path} (sha1 {checksum}).")
    return str(zip_path)
