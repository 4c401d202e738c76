"""One prepared measurement of the three pretraining bundles' training steps on a GPU: cubes/s, data waiting, peak GPU
memory, FLOPs and achieved TFLOP/s against the device's bf16 peak, with bf16 autocast, ``channels_last_3d`` and
``torch.compile`` each on and off.

    python benchmarks/gpu_suite.py [--smoke] [--device auto] [--bundles genesis mae cspr]
        [--variants fp32 bf16 channels_last compile all] [--steps 20] [--warmup 5] [--workers 4]
        [--max-minutes 8] [--peak-tflops X] [--results DIR] [--tag TAG]

Every part of a step comes from the bundle's own ``configs/train.json`` (``network_def``, ``optimizer``, ``loss``, the
pretext ``corruption`` / ``masking``, the loader's ``train#preprocessing``) with only the sizes overridden:

- ``genesis``: ``genesis_pretrain`` at the released width (``genesis_features`` 32), 64×64×32 cubes read by
  ``StoreCubeDataset`` from a volume store of synthetic CTs (``collate_store_cubes``, persistent workers), corrupted
  on the device by ``GenesisPrepareBatch``; batches 6, 16, 32, 64;
- ``mae``: ``mae_pretrain``, the ResEnc-L U-Net at 160³ patches from a z-scored store, the bundle's random affine
  and flips in the workers, block masking on the device by ``MaskedPrepareBatch``; batches 2, 4;
- ``cspr``: ``cspr_pretrain``, the 3D ResNet-18 on 224² photos as volumes of 3 slices (``CacheDataset`` of
  synthetic photos through the bundle's transforms); batches 64, 256.

A step is: wait for the batch, the bundle's prepare-batch on the device, forward, loss, backward, gradient clipping
where the bundle clips, optimizer step. Per bundle and batch, the FLOPs of one step (forward and backward) are
counted once with ``torch.utils.flop_counter.FlopCounterMode`` on the eager float32 network; then each variant runs
``--warmup`` steps (compilation happens there, timed as ``first_steps_s``) and ``--steps`` measured steps:

- cubes/s (images/s for CSPR), the share of the wall time spent waiting for the loader, peak GPU memory
  (``torch.cuda.max_memory_allocated``);
- achieved TFLOP/s = FLOPs per step × steps/s; the bound = peak FLOP/s ÷ FLOPs per cube (the device's dense bf16
  peak from its datasheet, or ``--peak-tflops``); measured / bound;
- safety: the loss of one fixed batch under the variant against float32 eager (relative difference; a variant is
  safe when the loss is finite and within 2%), and a finite loss after the measured steps.

The variants: ``fp32`` (eager float32), ``bf16`` (``torch.autocast`` bfloat16), ``channels_last`` (network and input
in ``torch.channels_last_3d``), ``compile`` (``torch.compile`` of the network), ``all`` (the three together). The
first batch size of a bundle runs every variant; its other batch sizes run fp32 and the fastest safe variant. The
fastest safe variant is written per bundle as the recommended GPU setting. ``--max-minutes`` leaves out the runs
that would start after that time (named in the results), so a short GPU slot always ends with its files.

``--flops-only``: the bound on paper without a device: the FLOPs per cube of every bundle and batch counted on the
``meta`` device, and the bound cubes/s on the H200, H100 and A100 (``gpu_suite_flops.json`` and ``.md``).

``--smoke``: tiny networks, cubes and batches, 1 + 1 steps, variants fp32, bf16 and channels_last, on the CPU with
one thread and the corruptions' torch code (the code a GPU runs; ``MONAI_GENESIS_NUMBA=0``); the tests run it so that
a GPU slot is not spent on a bug.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common

logger = logging.getLogger("benchmarks.gpu_suite")

VARIANTS = {
    "fp32": {"bf16": False, "channels_last": False, "compile": False},
    "bf16": {"bf16": True, "channels_last": False, "compile": False},
    "channels_last": {"bf16": False, "channels_last": True, "compile": False},
    "compile": {"bf16": False, "channels_last": False, "compile": True},
    "all": {"bf16": True, "channels_last": True, "compile": True},
}
BUNDLES = {
    "genesis": {
        "bundle": "genesis_pretrain", "batches": [6, 16, 32, 64], "size": [64, 64, 32],
        "overrides": {"genesis_features": 32}, "intensity": "ct", "network": "GenesisUNet, features 32",
    },
    "mae": {
        "bundle": "mae_pretrain", "batches": [2, 4], "size": [160, 160, 160], "overrides": {},
        "intensity": "zscore", "network": "ResEnc-L U-Net",
    },
    "cspr": {
        "bundle": "cspr_pretrain", "batches": [64, 256], "size": [3, 224, 224], "overrides": {"image_size": 224},
        "network": "3D ResNet-18",
    },
}
SMOKE = {
    "genesis": {"batches": [2], "size": [32, 32, 16], "overrides": {"genesis_features": 2}},
    "mae": {"batches": [1], "size": [32, 32, 32],
            "overrides": {"resenc_features": [4, 8, 8, 8, 8, 8], "resenc_strides": [1, 2, 2, 2, 1, 1],
                          "mask_block_size": 8}},
    "cspr": {"batches": [2], "size": [3, 16, 16], "overrides": {"image_size": 16}},
}
# dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from NVIDIA's datasheets; the first name found in the device's
# name is used
BF16_PEAK_TFLOPS = [
    ("H200", 989.4), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4), ("A100", 312.0), ("L40S", 362.05),
    ("L4", 121.0),
]
SAFE_LOSS_DIFFERENCE = 0.02


def device_peak_tflops(device: torch.device, given: float | None) -> tuple[float | None, str]:
    """The bf16 peak of ``device`` in TFLOP/s and where it comes from."""
    if given:
        return float(given), "--peak-tflops"
    if device.type != "cuda":
        return None, "not known for a CPU (pass --peak-tflops)"
    name = torch.cuda.get_device_name(device)
    for key, value in BF16_PEAK_TFLOPS:
        if key.lower() in name.lower():
            return value, f"datasheet of the {key}"
    return None, f"not known for {name} (pass --peak-tflops)"


# -- the parts of a bundle's step ------------------------------------------------------------------------------------


def bundle_parser(bundle: str, overrides: dict):
    from monai.bundle import ConfigParser

    parser = ConfigParser(globals={"monai_genesis": "monai_genesis", "os": "os"})
    parser.read_config(common.bundle_config(bundle))
    parser.update(overrides)
    return parser


class Task:
    """One bundle at one batch size: its network factory, loss, prepare-batch, loader and a fixed check batch."""

    def __init__(self, name: str, spec: dict, batch: int, args, device: torch.device, work: Path) -> None:
        self.name, self.spec, self.batch, self.device = name, spec, batch, device
        overrides = dict(spec["overrides"])
        if name in ("genesis", "mae"):
            overrides.update(patch_size=list(spec["size"]), batch_size=batch)
        self.parser = bundle_parser(spec["bundle"], overrides)
        self.loss = self.parser.get_parsed_content("loss")
        self.max_grad_norm = self.parser.get("max_grad_norm")
        self.loader = self._loader(args, work)
        self._batches = iter(self.loader)
        self.check = self.prepare(self.next_batch())

    def network(self, seed: int = 0) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(seed)
        net = self.parser.get_parsed_content("network_def", lazy=False).to(self.device)
        self.parser["network"] = net
        return net, self.parser.get_parsed_content("optimizer", lazy=False)

    def _loader(self, args, work: Path):
        from monai.data import CacheDataset, DataLoader

        workers = args.workers
        # as the bundles' loaders (no pinned memory)
        common_args = {"num_workers": workers, "persistent_workers": workers > 0}
        if self.name == "cspr":
            from monai_genesis.data.natural import synthetic_natural_images

            side = self.spec["size"][-1]
            per_class = max(4, self.batch)
            images, _ = synthetic_natural_images(num_classes=4, num_train_per_class=per_class, num_test_per_class=0,
                                                 size=side, seed=0)
            dataset = CacheDataset(images["train"], self.parser.get_parsed_content("train#preprocessing"),
                                   progress=False)
            self._prepare = self.parser.get_parsed_content("train#prepare_batch")
            return DataLoader(dataset, batch_size=self.batch, shuffle=True, drop_last=True, **common_args)
        from monai_genesis.data import StoreCubeDataset
        from monai_genesis.data.store_cubes import collate_store_cubes

        store = prepared_store(args, work, self.spec["intensity"])
        transform = self.parser.get_parsed_content("train#preprocessing") if self.name == "mae" else None
        dataset = StoreCubeDataset(store, cube_size=self.spec["size"], cubes_per_volume=max(8, 4 * self.batch),
                                   border=self.parser.get_parsed_content("cube_border"), transform=transform)
        self._prepare = self.parser.get_parsed_content("train#prepare_batch")
        return DataLoader(dataset, batch_size=self.batch, shuffle=True, drop_last=True,
                          collate_fn=collate_store_cubes, **common_args)

    def next_batch(self):
        try:
            return next(self._batches)
        except StopIteration:
            self._batches = iter(self.loader)
            return next(self._batches)

    def prepare(self, batch) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """``(inputs, targets, network kwargs)`` on the device, by the bundle's prepare-batch."""
        out = self._prepare(batch, self.device, non_blocking=True)
        return out[0], out[1], (out[3] if len(out) > 3 else {})


def prepared_store(args, work: Path, intensity: str):
    """The volume store of the suite's synthetic CTs under ``intensity`` (written once per run)."""
    from benchmarks.pretraining_scale import write_volumes
    from monai_genesis.data import StoreSettings, VolumeStore

    shape = [64, 64, 48] if args.smoke else [320, 320, 192]
    paths = write_volumes(work / "volumes", 2 if args.smoke else 8, shape)
    return VolumeStore.prepare(paths, str(work / "store"), StoreSettings(intensity=intensity), progress=False)


# -- one run ------------------------------------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(task: Task, net, optimizer, variant: dict):
    model = torch.compile(net) if variant["compile"] else net
    memory_format = torch.channels_last_3d if variant["channels_last"] else torch.contiguous_format

    def forward_loss(inputs, targets, kwargs):
        inputs = inputs.contiguous(memory_format=memory_format)
        with torch.autocast(task.device.type, dtype=torch.bfloat16, enabled=variant["bf16"]):
            out = model(inputs, **kwargs)
        return task.loss(out.float(), targets)

    def step(inputs, targets, kwargs):
        loss = forward_loss(inputs, targets, kwargs)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if task.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(net.parameters(), task.max_grad_norm)
        optimizer.step()
        return loss.detach()

    return forward_loss, step


def count_flops(task: Task) -> float:
    """FLOPs of one training step (forward, loss, backward) of the eager float32 network on the check batch."""
    from torch.utils.flop_counter import FlopCounterMode

    net, optimizer = task.network()
    forward_loss, _ = make_step(task, net, optimizer, VARIANTS["fp32"])
    with FlopCounterMode(display=False) as counter:
        forward_loss(*task.check).backward()
    del net, optimizer
    return float(counter.get_total_flops())


def run_variant(task: Task, variant_name: str, args, reference_loss: float, flops: float, peak: float | None) -> dict:
    variant = VARIANTS[variant_name]
    device = task.device
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    torch._dynamo.reset()
    net, optimizer = task.network()
    if variant["channels_last"]:
        net = net.to(memory_format=torch.channels_last_3d)
    forward_loss, step = make_step(task, net, optimizer, variant)
    clock = time.perf_counter()
    with torch.no_grad():
        check = float(forward_loss(*task.check))
    for _ in range(args.warmup):
        step(*task.prepare(task.next_batch()))
    sync(device)
    first_steps = time.perf_counter() - clock
    waits, start = 0.0, time.perf_counter()
    loss = torch.zeros(())
    for _ in range(args.steps):
        before = time.perf_counter()
        batch = task.next_batch()
        waits += time.perf_counter() - before
        loss = step(*task.prepare(batch))
    sync(device)
    wall = time.perf_counter() - start
    final = float(loss)
    difference = abs(check - reference_loss) / max(abs(reference_loss), 1e-12)
    cubes_per_s = args.steps * task.batch / wall
    per_cube = flops / task.batch
    row = {
        "bundle": task.name, "batch": task.batch, "variant": variant_name, **variant,
        "steps": args.steps, "seconds": wall, "cubes_per_s": cubes_per_s, "data_wait_share": waits / wall,
        "first_steps_s": first_steps, "flops_per_step": flops, "flops_per_cube": per_cube,
        "achieved_tflops": flops * args.steps / wall / 1e12,
        "check_loss": check, "reference_loss": reference_loss, "loss_difference": difference, "final_loss": final,
        "safe": math.isfinite(check) and math.isfinite(final) and difference <= SAFE_LOSS_DIFFERENCE,
    }
    if peak:
        row["bound_cubes_per_s"] = peak * 1e12 / per_cube
        row["of_bound"] = cubes_per_s / row["bound_cubes_per_s"]
    if device.type == "cuda":
        row["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    del net, optimizer
    return row


# -- the bound on paper ---------------------------------------------------------------------------------------------------


def paper_flops(names, smoke: bool) -> list[dict]:
    """FLOPs per cube of each bundle's training step (forward, loss, backward) at every batch size, counted on the
    ``meta`` device (shapes only: no memory, no device), and the bound cubes/s on the datasheet devices."""
    from torch.utils.flop_counter import FlopCounterMode

    rows = []
    for name in names:
        spec = {**BUNDLES[name], **(SMOKE[name] if smoke else {})}
        parser = bundle_parser(spec["bundle"], dict(spec["overrides"]))
        with torch.device("meta"):
            net = parser.get_parsed_content("network_def", lazy=False)
        loss = parser.get_parsed_content("loss")
        for batch in spec["batches"]:
            x = torch.empty(batch, 1, *spec["size"], device="meta")
            # the targets: the clean cube (genesis), clean and mask (mae, MaskedMSELoss), class indices (cspr)
            y = {"genesis": lambda: torch.empty_like(x),
                 "mae": lambda: torch.empty(batch, 2, *spec["size"], device="meta"),
                 "cspr": lambda: torch.zeros(batch, dtype=torch.long, device="meta")}[name]()
            with FlopCounterMode(display=False) as counter:
                loss(net(x).float(), y).backward()
            per_cube = counter.get_total_flops() / batch
            network = f"{spec['network']} (smoke sizes)" if smoke else spec["network"]
            rows.append({"bundle": name, "network": network, "size": spec["size"], "batch": batch,
                         "flops_per_cube": per_cube,
                         "bound_cubes_per_s": {key: tflops * 1e12 / per_cube for key, tflops in BF16_PEAK_TFLOPS}})
    return rows


def paper_table(rows: list[dict]) -> str:
    devices = ["H200", "H100", "A100"]
    return common.markdown_table(
        ["bundle", "network", "input", "batch", "GFLOP per cube (step)",
         *[f"bound cubes/s, {d} ({dict(BF16_PEAK_TFLOPS)[d]:g} TFLOP/s bf16)" for d in devices]],
        [[r["bundle"], r["network"], "×".join(map(str, r["size"])), r["batch"], f"{r['flops_per_cube'] / 1e9:,.1f}",
          *[f"{r['bound_cubes_per_s'][d]:,.0f}" for d in devices]] for r in rows],
        ["l", "l", "l"] + ["r"] * 5,
    )


# -- the suite ------------------------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU, seconds (the tests' setting)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (--smoke: cpu unless given)")
    parser.add_argument("--bundles", nargs="+", choices=list(BUNDLES), default=list(BUNDLES))
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), help="variants of the first batch size "
                        "(default: all five; --smoke: fp32 bf16 channels_last)")
    parser.add_argument("--steps", type=int, help="measured steps per run (default 20; --smoke 2)")
    parser.add_argument("--warmup", type=int, help="steps before measuring, compilation included (default 5; "
                        "--smoke 1)")
    parser.add_argument("--workers", type=int, help="loader workers (default 4, as the bundles; --smoke 0)")
    parser.add_argument("--max-minutes", type=float, default=8.0, help="no run starts after this many minutes")
    parser.add_argument("--peak-tflops", type=float, help="the device's bf16 peak, where the table does not know it")
    parser.add_argument("--results", default=str(common.DEFAULT_RESULTS), help="folder of the result files")
    parser.add_argument("--tag", default="", help="suffix of the result file names")
    parser.add_argument("--work", help="folder of the volumes and stores (default: a temporary folder)")
    parser.add_argument("--flops-only", action="store_true",
                        help="only count the FLOPs per cube on the meta device and the bounds on the datasheet devices "
                        "(no device needed, seconds)")
    args = parser.parse_args(argv)
    smoke = args.smoke
    defaults = {"variants": ["fp32", "bf16", "channels_last"] if smoke else list(VARIANTS), "steps": 1 if smoke else 20,
                "warmup": 1 if smoke else 5, "workers": 0 if smoke else 4}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if smoke and args.device == "auto":
        args.device = "cpu"
    if args.steps < 1 or args.warmup < 0 or args.workers < 0:
        raise SystemExit("--steps must be at least 1, --warmup and --workers at least 0.")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.flops_only:
        rows = paper_flops(args.bundles, args.smoke)
        payload = {"benchmark": "gpu_suite_flops", "setting": "smoke" if args.smoke else "full",
                   "command": common.command_line(__file__, argv),
                   "machine": common.machine_info(torch.device("cpu")),
                   "peaks_tflops_bf16": dict(BF16_PEAK_TFLOPS), "flops": rows}
        text = paper_table(rows) + (
            "\n\nFLOPs of one training step (forward, loss, backward) counted by torch.utils.flop_counter on the meta "
            "device, per cube; the bound is the device's dense bf16 peak (datasheet) over it.")
        name = "_".join(p for p in ("gpu_suite_flops", "smoke" if args.smoke else "", args.tag) if p)
        common.write_results(args.results, name, payload, text)
        print(text)
        return payload
    device = common.resolve_device(args.device)
    if args.smoke:
        # the torch code of the corruptions, which a GPU runs, not the compiled CPU kernels (compiled on first use)
        os.environ["MONAI_GENESIS_NUMBA"] = "0"
        common.set_threads(1)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    clock = common.Stopwatch()
    peak, peak_source = device_peak_tflops(device, args.peak_tflops)
    setting = "smoke" if args.smoke else "full"
    rows, skipped, flops_rows = [], [], []
    with tempfile.TemporaryDirectory(prefix="gpu_suite_") as tmp:
        work = Path(args.work or tmp)
        for name in args.bundles:
            spec = {**BUNDLES[name], **(SMOKE[name] if args.smoke else {})}
            for k, batch in enumerate(spec["batches"]):
                if clock() > args.max_minutes * 60:
                    skipped.append(f"{name} batch {batch}")
                    continue
                try:
                    task = Task(name, spec, batch, args, device, work)
                    flops = count_flops(task)
                    net, _ = task.network()
                    with torch.no_grad():
                        reference = float(task.loss(net(task.check[0], **task.check[2]).float(), task.check[1]))
                    del net
                except Exception as e:  # noqa: BLE001 - out of memory at this batch: the other runs still run
                    logger.warning(f"{name} batch {batch} could not start: {e}")
                    rows.append({"bundle": name, "batch": batch, "variant": "setup", "safe": False,
                                 "error": f"{type(e).__name__}: {str(e)[:300]}"})
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                    continue
                flops_rows.append({"bundle": name, "batch": batch, "flops_per_step": flops,
                                   "flops_per_cube": flops / batch})
                if k == 0:
                    variants = args.variants
                else:
                    safe = [r for r in rows if r["bundle"] == name and r["safe"]]
                    best = max(safe, key=lambda r: r["cubes_per_s"])["variant"] if safe else "fp32"
                    variants = list(dict.fromkeys(["fp32", best]))
                for variant in variants:
                    if clock() > args.max_minutes * 60:
                        skipped.append(f"{name} batch {batch} {variant}")
                        continue
                    logger.info(f"{name} batch {batch} {variant} ...")
                    try:
                        row = run_variant(task, variant, args, reference, flops, peak)
                    except Exception as e:  # noqa: BLE001 - a variant that fails (a compiler error, out of memory) is a result
                        logger.warning(f"{name} batch {batch} {variant} failed: {e}")
                        row = {"bundle": name, "batch": batch, "variant": variant, "error": f"{type(e).__name__}: "
                               f"{str(e)[:300]}", "safe": False}
                        if device.type == "cuda":
                            torch.cuda.empty_cache()
                    else:
                        logger.info(f"  {row['cubes_per_s']:.1f} cubes/s, waiting {100 * row['data_wait_share']:.0f}%")
                    rows.append(row)
                del task
    recommended = {}
    for name in args.bundles:
        safe = [r for r in rows if r["bundle"] == name and r.get("safe")]
        if safe:
            best = max(safe, key=lambda r: r["cubes_per_s"])
            recommended[name] = {"variant": best["variant"], "batch": best["batch"], "cubes_per_s": best["cubes_per_s"]}
    payload = {
        "benchmark": "gpu_suite",
        "setting": setting,
        "command": common.command_line(__file__, argv),
        "machine": common.machine_info(device),
        "config": {"bundles": {n: {**BUNDLES[n], **(SMOKE[n] if args.smoke else {})} for n in args.bundles},
                   "variants": args.variants, "steps": args.steps, "warmup": args.warmup, "workers": args.workers,
                   "max_minutes": args.max_minutes, "peak_tflops": peak, "peak_source": peak_source,
                   "safe_loss_difference": SAFE_LOSS_DIFFERENCE},
        "flops": flops_rows,
        # the same count on the meta device, at every batch of the setting (the bound on paper)
        "paper": paper_flops(args.bundles, args.smoke),
        "results": rows,
        "recommended": recommended,
        "skipped": skipped,
        "total_seconds": clock(),
    }
    text = table(payload)
    name = common.results_name("gpu_suite", setting, device, args.tag)
    json_path, md_path = common.write_results(args.results, name, payload, text)
    print(text)
    logger.info(f"wrote {json_path} and {md_path} in {clock():.0f} s")
    return payload


def table(payload: dict) -> str:
    has_gpu = any("peak_gpu_memory_gib" in r for r in payload["results"])
    headers = ["bundle", "batch", "variant", "cubes/s", "data waiting", "GFLOP/cube", "TFLOP/s", "bound cubes/s",
               "measured / bound", "loss vs fp32", "first steps (s)"]
    if has_gpu:
        headers.insert(5, "peak GPU mem (GiB)")
    rows = []
    for r in payload["results"]:
        if "error" in r:
            rows.append([r["bundle"], r["batch"], r["variant"], "failed: " + r["error"][:80]] + ["–"] * (len(headers) - 4))
            continue
        line = [r["bundle"], r["batch"], r["variant"], f"{r['cubes_per_s']:.1f}", f"{100 * r['data_wait_share']:.1f}%",
                f"{r['flops_per_cube'] / 1e9:.2f}", f"{r['achieved_tflops']:.3f}",
                f"{r['bound_cubes_per_s']:,.0f}" if "bound_cubes_per_s" in r else "–",
                f"{100 * r['of_bound']:.1f}%" if "of_bound" in r else "–",
                f"{100 * r['loss_difference']:.2f}%" + ("" if r["safe"] else " (unsafe)"), f"{r['first_steps_s']:.1f}"]
        if has_gpu:
            line.insert(5, f"{r['peak_gpu_memory_gib']:.2f}")
        rows.append(line)
    cfg = payload["config"]
    notes = [
        f"{payload['setting']} setting, {payload['machine'].get('gpu') or payload['machine']['device']}; "
        f"{cfg['steps']} steps measured after {cfg['warmup']}, {cfg['workers']} loader workers; bf16 peak: "
        f"{cfg['peak_tflops'] or 'not known'} TFLOP/s ({cfg['peak_source']}). Inputs: "
        + "; ".join(f"{b} {'×'.join(map(str, c['size']))}" for b, c in cfg["bundles"].items())
        + " (a 'cube' of cspr is one photo as a volume of 3 slices).",
        "Recommended (fastest safe variant): " + (", ".join(f"{b}: {v['variant']} (batch {v['batch']}, "
                                                           f"{v['cubes_per_s']:.1f} cubes/s)"
                                                           for b, v in payload["recommended"].items()) or "none") + ".",
    ]
    if payload["skipped"]:
        notes.append(f"Not run (past --max-minutes {cfg['max_minutes']:g}): " + "; ".join(payload["skipped"]) + ".")
    return common.markdown_table(headers, rows, ["l", "r", "l"] + ["r"] * (len(headers) - 3)) + "\n\n" + "\n\n".join(notes)


if __name__ == "__main__":
    common.setup_logging("--verbose" in sys.argv)
    main()
