"""Benchmark the spectra of every convolution of torchvision ResNets at 3 x 224 x 224.

    .venv/bin/python bench/conv_spectra.py                      # resnet18 and resnet50, CPU
    .venv/bin/python bench/conv_spectra.py --models resnet18 --device cuda
    .venv/bin/python bench/conv_spectra.py --layers 3 --threads 2 --check 2

Random weights (``weights=None``: nothing is downloaded). Per layer it prints the seconds of
each method (reshaped kernel, FFT of the circular layer, the padded-grid upper bound, Lanczos
with its certificate) and how the values agree: the exact operator norm against the
reshaped-kernel norm that ``spectral_norm`` uses, the circular (FFT) norm and the upper
bound, and the relative error the certificate allows; then the totals per model.
``--check K`` recomputes the first K Lanczos layers by a separate float64-only Lanczos run
from another random start and prints the relative difference.
"""

from __future__ import annotations

import argparse
import time

import torch
import torchvision

from nnspaces.spaces.conv_spectra import layer_spectrum
from nnspaces.spaces.conv_table import conv_table, input_shapes

COLUMNS = [
    "layer", "shape", "sigma_max", "sigma_max_label", "sigma_max_rel_error", "kernel_over_exact",
    "circular_over_exact", "upper_over_exact", "lanczos_steps", "seconds_kernel_norm",
    "seconds_circular", "seconds_upper_bound", "seconds_lanczos",
]  # fmt: skip


def check(model, table, device, k: int) -> None:
    """The first ``k`` Lanczos rows of ``table`` again, float64 only, another start."""
    shapes, modules = input_shapes(model, (3, 224, 224), device), dict(model.named_modules())
    rows = table[table.lanczos_steps > 0].head(k)
    print(f"\nseparate float64-only Lanczos (seed 1) on {len(rows)} layers:")
    for row in rows.itertuples():
        t = time.perf_counter()
        s = layer_spectrum(
            modules[row.layer], shapes[row.layer], device=device, seed=1, fast=False,
            upper_bound=False, circular=False,
        )  # fmt: skip
        diff = abs(s.sigma_max - row.sigma_max) / s.sigma_max
        print(
            f"  {row.layer}: {s.sigma_max:.10f} ({s.sigma_max_label}, {s.lanczos_steps} steps, "
            f"{time.perf_counter() - t:.1f} s); relative difference {diff:.2e}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "resnet50"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--layers", type=int, default=None, help="first N convolutions only")
    parser.add_argument("--smallest-steps", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--no-upper-bound", action="store_true", help="skip the padded FFT")
    parser.add_argument("--check", type=int, default=0, help="recompute K layers separately")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    for name in args.models:
        torch.manual_seed(0)
        model = getattr(torchvision.models, name)(weights=None).to(args.device)
        start = time.perf_counter()
        table = conv_table(
            model, (3, 224, 224), layers=args.layers, device=args.device,
            smallest_steps=args.smallest_steps, max_steps=args.max_steps,
            upper_bound=not args.no_upper_bound,
        )  # fmt: skip
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        wall = time.perf_counter() - start
        table = table.assign(
            kernel_over_exact=table.kernel_norm / table.sigma_max,
            circular_over_exact=table.circular_norm / table.sigma_max,
            upper_over_exact=table.sigma_max_upper / table.sigma_max,
        )
        print(f"\n{name}: {len(table)} convolutions at 3 x 224 x 224")
        print(table[COLUMNS].to_string(index=False, float_format=lambda v: f"{v:.6g}"))
        secs = table.filter(like="seconds_").sum()
        exact = int((table.sigma_max_label == "exact").sum())
        slowest = table.assign(total=table.filter(like="seconds_").sum(axis=1)).nlargest(3, "total")
        print(
            f"{name} total {wall:.1f} s ("
            + ", ".join(f"{k[8:]} {v:.1f} s" for k, v in secs.items())
            + f"); sigma_max exact for {exact} of {len(table)}, largest certified relative "
            f"error {table.sigma_max_rel_error.max():.1e}; circular / exact "
            f"{table.circular_over_exact.min():.4f} to {table.circular_over_exact.max():.4f}, "
            f"kernel / exact {table.kernel_over_exact.min():.4f} to "
            f"{table.kernel_over_exact.max():.4f}; slowest: "
            + ", ".join(f"{r.layer} {r.total:.1f} s" for r in slowest.itertuples())
        )
        if args.check:
            check(model, table, args.device, args.check)


if __name__ == "__main__":
    main()
