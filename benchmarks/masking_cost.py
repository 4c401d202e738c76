"""Share of a ResEnc training step spent on the batched block masking of ``mae_pretrain``.

    python benchmarks/masking_cost.py [--device cpu|cuda] [--preset L] [--batch-size 2] [--patch-size 96 96 96]
        [--steps 3] [--threads 0] [--results DIR] [--tag TAG]

One training step of ``mae_pretrain`` on the device is: ``MaskedPrepareBatch`` (draw the block masks of the batch,
render them to voxels, fill the masked voxels, concatenate the target) -> forward of ``ResEncUNet`` -> masked MSE ->
backward -> gradient-norm clipping -> SGD step (Nesterov 0.99). Both parts are timed separately on the same batch,
after one warm-up step each, as the median of ``--steps`` repetitions. The bundle's default batch is 2; its 160³
patch is the default here only on a GPU: on a CPU, 160³ ResEnc-L steps take minutes and tens of GiB, so pass a
smaller ``--patch-size`` (both parts grow linearly with the voxels of the patch).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402

logger = logging.getLogger("benchmarks.masking_cost")


def _timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def measure(args, device: torch.device) -> dict:
    """Median seconds of the masking and of the rest of the step, and the masking's share of the whole step."""
    from monai_genesis.engines import MaskedPrepareBatch
    from monai_genesis.handlers import GradientNormClipper
    from monai_genesis.losses import MaskedMSELoss
    from monai_genesis.networks import ResEncUNet
    from monai_genesis.transforms import RandBlockMask

    torch.manual_seed(0)
    net = ResEncUNet.preset(args.preset).to(device).train()
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-2, momentum=0.99, nesterov=True, weight_decay=3e-5)
    loss_fn, clip = MaskedMSELoss(), GradientNormClipper(12.0)
    prepare = MaskedPrepareBatch(RandBlockMask(args.block_size, args.mask_ratio), seed=0)
    batch = {"image": torch.randn(args.batch_size, 1, *args.patch_size)}
    prepared = {}

    def masking():
        prepared["batch"] = prepare(batch, device)

    def rest_of_step():
        masked, target = prepared["batch"]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(masked), target)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), clip.max_norm)
        optimizer.step()

    mask_times, step_times = [], []
    for i in range(args.steps + 1):
        m, s = _timed(masking, device), _timed(rest_of_step, device)
        if i:  # the first repetition warms up allocators and kernels
            mask_times.append(m)
            step_times.append(s)
        logger.info(f"repetition {i}: masking {m * 1e3:.1f} ms, network step {s:.2f} s")
    mask, rest = statistics.median(mask_times), statistics.median(step_times)
    return {"masking_s": mask, "network_step_s": rest, "masking_share": mask / (mask + rest),
            "masking_times_s": mask_times, "network_step_times_s": step_times}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--preset", default="L", help="ResEncUNet preset (L, M or cpu)")
    parser.add_argument("--batch-size", type=int, default=2, help="the bundle's default batch is 2")
    parser.add_argument("--patch-size", type=int, nargs=3, help="default 160³ on a GPU, 96³ on a CPU")
    parser.add_argument("--block-size", type=int, default=16)
    parser.add_argument("--mask-ratio", type=float, default=0.75)
    parser.add_argument("--steps", type=int, default=3, help="timed repetitions after one warm-up")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--results", default=str(common.DEFAULT_RESULTS))
    parser.add_argument("--tag", default="")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    common.set_threads(args.threads)
    device = common.resolve_device(args.device)
    if args.patch_size is None:
        args.patch_size = [160, 160, 160] if device.type == "cuda" else [96, 96, 96]
    result = measure(args, device)
    patch = "×".join(map(str, args.patch_size))
    text = common.markdown_table(
        ["network", "batch", "patch", "masking (ms)", "rest of the step (s)", "masking share"],
        [[f"ResEnc-{args.preset}", args.batch_size, patch, f"{1e3 * result['masking_s']:.1f}",
          f"{result['network_step_s']:.2f}", f"{100 * result['masking_share']:.3f}%"]],
        ["l", "r", "r", "r", "r", "r"],
    ) + (f"\n\nMedian of {args.steps} repetitions after one warm-up, {device.type} with {torch.get_num_threads()} torch "
         f"threads; blocks of {args.block_size}³, mask ratio {args.mask_ratio}.")
    payload = {"benchmark": "masking_cost", "command": common.command_line(__file__, args.argv),
               "machine": common.machine_info(device),
               "config": {"preset": args.preset, "batch_size": args.batch_size, "patch_size": list(args.patch_size),
                          "block_size": args.block_size, "mask_ratio": args.mask_ratio, "steps": args.steps},
               **result}
    name = common.results_name("masking_cost", patch.replace("×", "x"), device, args.tag)
    json_path, md_path = common.write_results(args.results, name, payload, text)
    logger.info(f"{text}\nwrote {json_path} and {md_path}")
    return payload


if __name__ == "__main__":
    common.setup_logging("--verbose" in sys.argv)
    main()
