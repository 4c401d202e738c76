"""ResEnc-L across the nnssl bridge: file size, import and export time, and output parity with the reference network.

    python benchmarks/nnssl_interop.py [--patch-size 64 64 64] [--threads 0] [--results DIR] [--tag TAG]

Builds nnssl's ResEnc-L with ``dynamic-network-architectures`` (``pip install --no-deps
dynamic-network-architectures==0.4.4``), moves every weight off its initial value, saves it in nnssl's release form
(``checkpoint_final.pth``), then times (median of three) ``load_pretrained`` of that file into ``ResEncUNet`` (stem and
encoder) and ``export_nnssl`` of a ``ResEncUNet`` back into that form, and measures the largest output difference on
one random input in eval mode: imported with the axes as stored (float32), imported with the axes reversed and the
input transposed (float32 and float64), and exported then loaded strictly into the reference (float32: against
``ResEncUNet`` on the transposed input, and against the reference's own outputs before the round trip).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402

logger = logging.getLogger("benchmarks.nnssl_interop")


def _median_time(fn, repeats: int = 3) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def measure(args) -> dict:
    from dynamic_network_architectures.architectures.unet import ResidualEncoderUNet
    from torch import nn

    from monai_genesis.interop import export_nnssl, read_nnssl_checkpoint
    from monai_genesis.networks import ResEncUNet
    from monai_genesis.weights import load_pretrained

    torch.manual_seed(0)
    ref = ResidualEncoderUNet(
        1, 6, [32, 64, 128, 256, 320, 320], nn.Conv3d, 3, [1, 2, 2, 2, 2, 2], [1, 3, 4, 6, 6, 6], 1, [1] * 5,
        conv_bias=True, norm_op=nn.InstanceNorm3d, norm_op_kwargs={"eps": 1e-5, "affine": True},
        nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True}, deep_supervision=False,
    ).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    x = torch.randn(1, 1, *args.patch_size)
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "checkpoint_final.pth"
        torch.save({"network_weights": ref.state_dict(), "nnssl_adaptation_plan": {}, "init_args": {},
                    "trainer_name": "reference"}, path)
        out["file_mb"] = path.stat().st_size / 2**20
        out["file_keys"] = len(ref.state_dict())
        target = ResEncUNet.preset("L").eval()
        out["import_s"], report = _median_time(lambda: load_pretrained(target, path))
        out["encoder_tensors_loaded"] = len(report.loaded)
        out["encoder_parameters"] = sum(p.numel() for p in target.encoder.parameters())
        with torch.no_grad():
            want = ref(x)
            kept = ResEncUNet.preset("L").eval()
            kept.load_state_dict(read_nnssl_checkpoint(path, reverse_axes=False).state_dict, strict=True)
            out["import_axes_kept_float32"] = (kept(x) - want).abs().max().item()
            turned = ResEncUNet.preset("L").eval()
            turned.load_state_dict(read_nnssl_checkpoint(path).state_dict, strict=True)
            xt = x.permute(0, 1, 4, 3, 2)
            out["import_axes_reversed_float32"] = (turned(xt).permute(0, 1, 4, 3, 2) - want).abs().max().item()
            out["import_axes_reversed_float64"] = (
                turned.double()(xt.double()).permute(0, 1, 4, 3, 2) - ref.double()(x.double())
            ).abs().max().item()
            ref.float()
            turned.float()
        model = Path(tmp) / "model.pt"
        torch.save(turned.state_dict(), model)
        out["export_s"], written = _median_time(
            lambda: export_nnssl(model, Path(tmp) / "export", overwrite=True)
        )
        back = torch.load(written, weights_only=True)["network_weights"]
        out["export_keys"] = len(back)
        ref.load_state_dict(back, strict=True)
        with torch.no_grad():
            back_out = ref(x)
            # the exported kernels, reversed back, are the reference's own: the same outputs to the last bit
            out["export_round_trip_float32"] = (back_out - want).abs().max().item()
            out["export_float32"] = (back_out - turned(xt).permute(0, 1, 4, 3, 2)).abs().max().item()
            out["output_std"] = want.std().item()
    return out


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patch-size", type=int, nargs=3, default=[64, 64, 64])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--results", default=str(common.DEFAULT_RESULTS))
    parser.add_argument("--tag", default="")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    common.set_threads(args.threads)
    device = torch.device("cpu")
    result = measure(args)
    patch = "×".join(map(str, args.patch_size))
    text = common.markdown_table(
        ["what", "value"],
        [
            ["nnssl file (release form)", f"{result['file_mb']:.0f} MiB, {result['file_keys']} keys"],
            ["import: load_pretrained, stem and encoder", f"{result['import_s']:.2f} s, "
             f"{result['encoder_tensors_loaded']} tensors ({result['encoder_parameters']:,} parameters)"],
            ["export: export_nnssl", f"{result['export_s']:.2f} s, {result['export_keys']} keys"],
            [f"max |Δ| import, axes kept, float32 ({patch})", f"{result['import_axes_kept_float32']:.3g}"],
            [f"max |Δ| import, axes reversed, float32 ({patch})", f"{result['import_axes_reversed_float32']:.3g}"],
            [f"max |Δ| import, axes reversed, float64 ({patch})", f"{result['import_axes_reversed_float64']:.3g}"],
            [f"max |Δ| export, strict load into the reference, vs ResEncUNet on the transposed input, float32 ({patch})",
             f"{result['export_float32']:.3g}"],
            [f"max |Δ| reference → import → export → reference, float32 ({patch})",
             f"{result['export_round_trip_float32']:.3g}"],
            ["std of the outputs", f"{result['output_std']:.3g}"],
        ],
        ["l", "r"],
    ) + f"\n\nCPU with {torch.get_num_threads()} torch threads; times are the median of three."
    payload = {"benchmark": "nnssl_interop", "command": common.command_line(__file__, args.argv),
               "machine": common.machine_info(device), "config": {"patch_size": list(args.patch_size)}, **result}
    name = common.results_name("nnssl_interop", patch.replace("×", "x"), device, args.tag)
    json_path, md_path = common.write_results(args.results, name, payload, text)
    logger.info(f"{text}\nwrote {json_path} and {md_path}")
    return payload


if __name__ == "__main__":
    common.setup_logging("--verbose" in sys.argv)
    main()
