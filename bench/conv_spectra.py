"""Benchmark the spectra of every convolution of torchvision ResNets at 3 x 224 x 224.

    .venv/bin/python bench/conv_spectra.py                      # resnet18 and resnet50, CPU
    .venv/bin/python bench/conv_spectra.py --models resnet18 --device cuda
    .venv/bin/python bench/conv_spectra.py --layers 3 --smallest-steps 200

Random weights (``weights=None``: nothing is downloaded). Per layer it prints the seconds of
each method (reshaped kernel, FFT of the circular layer, the padded-grid upper bound, Lanczos)
and how the values agree: the exact operator norm against the reshaped-kernel norm that
``spectral_norm`` uses and the circular (FFT) norm, and the upper bound's slack; then the
totals per model.
"""

from __future__ import annotations

import argparse
import time

import torch
import torchvision

from nnspaces.spaces.conv_table import conv_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "resnet50"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--layers", type=int, default=None, help="first N convolutions only")
    parser.add_argument("--smallest-steps", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--no-upper-bound", action="store_true", help="skip the padded FFT")
    args = parser.parse_args()
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
        wall = time.perf_counter() - start
        table = table.assign(
            kernel_over_exact=table.kernel_norm / table.sigma_max,
            circular_over_exact=table.circular_norm / table.sigma_max,
            upper_over_exact=table.sigma_max_upper / table.sigma_max,
        )
        cols = ["layer", "shape", "sigma_max", "sigma_max_label", "kernel_over_exact",
                "circular_over_exact", "upper_over_exact", "sigma_min_all", "sigma_min_all_label",
                "null_dim", "null_dim_label", "lanczos_steps", "seconds_circular",
                "seconds_upper_bound", "seconds_lanczos"]  # fmt: skip
        print(f"\n{name}: {len(table)} convolutions at 3 x 224 x 224")
        print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.6g}"))
        secs = table.filter(like="seconds_").sum()
        exact = int((table.sigma_max_label == "exact").sum())
        print(
            f"{name} total {wall:.1f} s ("
            + ", ".join(f"{k[8:]} {v:.1f} s" for k, v in secs.items())
            + f"); sigma_max exact for {exact} of {len(table)}"
        )


if __name__ == "__main__":
    main()
