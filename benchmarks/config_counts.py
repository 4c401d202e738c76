"""How much the bundle configs compute and repeat: ``$`` expressions per file, the longest one, shared lines.

    python benchmarks/config_counts.py [--bundles NAME ...] [--results DIR] [--tag TAG]

For every config of the training bundles (``bundles/*/configs/*.json`` but ``metadata.json``) and every shared
fragment (``configs/**/*.json``): the number of ``$`` expressions (strings starting with ``$``, ``imports`` left
out since they only import) and the length of the longest. For every ``train.json`` of a bundle: the share of its
lines that also occur in another bundle's ``train.json`` and the largest share it has with any one of them (lines
compared stripped, lines of brackets alone left out), and groups of byte-identical files. ``--bundles`` restricts
the count to the named bundles (default: every folder of ``bundles/``). The counts depend on the files only, not on
the machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402

BUNDLE_DIR = common.REPO / "bundles"
FRAGMENT_DIR = common.REPO / "configs"
# lines that carry no content of their own
_PUNCTUATION = set("{}[],")


def expressions(node, key: str = "") -> list[str]:
    """Every ``$`` string of a parsed JSON config, but those of its ``imports``."""
    if isinstance(node, dict):
        return [e for k, v in node.items() if k.lstrip("+") != "imports" for e in expressions(v, k)]
    if isinstance(node, list):
        return [e for v in node for e in expressions(v, key)]
    return [node] if isinstance(node, str) and node.startswith("$") else []


def content_lines(path: Path) -> list[str]:
    """The stripped lines of ``path`` that hold more than brackets and commas."""
    return [line.strip() for line in path.read_text().splitlines() if set(line.strip()) - _PUNCTUATION]


def config_files(names=None) -> list[Path]:
    bundles = sorted(p for p in BUNDLE_DIR.glob("*/configs/*.json")
                     if p.name != "metadata.json" and (not names or p.parent.parent.name in names))
    return bundles + sorted(FRAGMENT_DIR.rglob("*.json"))


def count(files: list[Path]) -> dict:
    per_file = {}
    for path in files:
        found = expressions(json.loads(path.read_text()))
        longest = max(found, key=len, default="")
        per_file[str(path.relative_to(common.REPO))] = {
            "expressions": len(found),
            "longest": len(longest),
            "longest_text": longest,
            "over_100": sum(len(e) > 100 for e in found),
            "lines": len(path.read_text().splitlines()),
        }
    trains = [p for p in files if p.name == "train.json" and p.parent.parent.parent == BUNDLE_DIR]
    lines = {p: content_lines(p) for p in trains}
    shared, pairwise, shared_count = {}, {}, {}
    for path in trains:
        others = {line for other in trains if other != path for line in lines[other]}
        own = lines[path]
        name = str(path.relative_to(common.REPO))
        shared_count[name] = sum(line in others for line in own)
        shared[name] = round(100 * shared_count[name] / max(1, len(own)))
        pairwise[name] = max((round(100 * sum(line in set(lines[other]) for line in own) / max(1, len(own)))
                              for other in trains if other != path), default=0)
    groups = defaultdict(list)
    for path in files:
        groups[hashlib.sha1(path.read_bytes()).hexdigest()].append(str(path.relative_to(common.REPO)))
    identical = sorted(g for g in groups.values() if len(g) > 1)
    bundle_counts = [v["expressions"] for k, v in per_file.items() if k.startswith("bundles/")]
    return {
        "files": per_file,
        "train_lines_shared": shared_count,
        "train_lines_shared_percent": shared,
        "train_lines_shared_with_one_percent": pairwise,
        "identical_files": identical,
        "summary": {
            "bundle_expressions": sum(bundle_counts),
            "most_in_one_bundle_file": max(bundle_counts, default=0),
            "longest": max((v["longest"] for v in per_file.values()), default=0),
            "over_100": sum(v["over_100"] for v in per_file.values()),
        },
    }


def table(result: dict) -> str:
    shared, pairwise = result["train_lines_shared_percent"], result["train_lines_shared_with_one_percent"]
    rows = [[f"`{name}`", v["lines"], v["expressions"], v["longest"], v["over_100"],
             f"{result['train_lines_shared'][name]}: {shared[name]} % ({pairwise[name]} %)" if name in shared else ""]
            for name, v in result["files"].items()]
    summary = result["summary"]
    text = common.markdown_table(
        ["file", "lines", "`$` expressions", "longest (chars)", "longer than 100",
         "train.json lines found in another: count, share (share in the closest one)"],
        rows,
    )
    text += (
        f"\n\nIn all: {summary['bundle_expressions']} expressions in the bundle files (at most "
        f"{summary['most_in_one_bundle_file']} in one), the longest {summary['longest']} characters, "
        f"{summary['over_100']} longer than 100. Byte-identical files: "
        + ("; ".join(", ".join(f"`{f}`" for f in g) for g in result["identical_files"]) or "none") + "."
    )
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundles", nargs="*", default=None, help="count only these bundles (folder names)")
    parser.add_argument("--results", default=str(common.DEFAULT_RESULTS), help="folder of the JSON and Markdown")
    parser.add_argument("--tag", default="", help="suffix of the result files' name")
    args = parser.parse_args(argv)
    result = count(config_files(args.bundles))
    name = "_".join(p for p in ("config_counts", args.tag) if p)
    payload = {"command": common.command_line("benchmarks/config_counts.py", argv),
               "machine": common.machine_info(torch.device("cpu")), **result}
    _, md_path = common.write_results(args.results, name, payload, table(result))
    print(md_path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
