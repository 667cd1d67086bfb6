#!/usr/bin/env python3
"""pytorch-fid's FID between two image folders, with the Inception weights file you name.

`python -m pytorch_fid A B` downloads its weights; this runs the same code
(`calculate_fid_given_paths`) with a local file instead — the real
`pt_inception-2015-12-05-6726825d.pth`, or the synthetic weights that
`tools/make_inception_golden.py --write-weights DIR` writes — so its value can be put beside

    lethe fid A B --feature-net inception:WEIGHTS

on the same folders (README, *Inception FID*).

    .venv/bin/python tools/pytorch_fid_with_weights.py A B --weights WEIGHTS [--batch-size 50]
"""

import argparse

import torch

import pytorch_fid.fid_score as fid_score
import pytorch_fid.inception as fid_inception


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--weights", required=True)
    parser.add_argument("--batch-size", type=int, default=50)
    args = parser.parse_args()
    state = torch.load(args.weights, map_location="cpu", weights_only=True)
    fid_inception.load_state_dict_from_url = lambda *a, **k: state
    fid = fid_score.calculate_fid_given_paths(
        [args.a, args.b], batch_size=args.batch_size, device="cpu", dims=2048, num_workers=0
    )
    print(f"pytorch-fid FID: {fid:.6f}")


if __name__ == "__main__":
    main()
