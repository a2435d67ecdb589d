"""Is our training loss systematically above the original's, or is one trajectory just noise?
Trains the original code and `maxq replay` from K different initial weights (the original's own
initialisation with seeds 1..K) on the same fixed batches, and reports the mean and standard
error over the K pairs of (ours - original) per window of steps. One pair cannot tell a bias
from chaos (docs/fidelity.md); K pairs can, at about (steps x 8 s + steps x 3 s) per pair here.

    python3 Scripts/trajectory_ensemble.py --original /path/to/MaxQ --data /tmp/cifar --pairs 6 --steps 30
"""
import argparse, os
import numpy as np
import torch
from fixture_io import write_safetensors
import trajectory as T


def main():
    p = argparse.ArgumentParser()
    T.add_training_arguments(p, steps=30)
    p.add_argument("--pairs", type=int, default=6)
    p.add_argument("--windows", type=int, default=3)
    p.add_argument("--batch-seed", type=int, default=42)
    p.add_argument("--work", default="/tmp/maxq-ensemble")
    p.add_argument("--out", default="/tmp/maxq-ensemble/ensemble.csv")
    args = p.parse_args()
    torch.set_num_threads(2)
    os.makedirs(args.work, exist_ok=True)

    batches, classes = T.fixed_batches(args.data, args.batch_size, args.steps, args.batch_seed)
    batch_file = os.path.join(args.work, "batches.safetensors")
    T.store_batches(batches, batch_file)
    rows = []
    for seed in range(1, args.pairs + 1):
        args.seed = seed
        model = T.original_model(args, classes)
        init_file = os.path.join(args.work, f"initial{seed}.safetensors")
        write_safetensors(init_file, {k: v for k, v in model.state_dict().items() if v.dtype != torch.int64})
        ours_csv = os.path.join(args.work, f"ours{seed}.csv")
        T.run_replay(args, batch_file, init_file, classes, ours_csv)
        ours = T.read_losses(ours_csv)
        original = T.train_original(model, batches, args)
        rows.append((seed, np.array(original), np.array(ours)))
        print(f"pair {seed}: mean loss original {np.mean(original):.4f}, ours {np.mean(ours):.4f}, "
              f"max original {max(original):.2f}, ours {max(ours):.2f}", flush=True)
    with open(args.out, "w") as f:
        f.write("seed,step,original,ours\n")
        for seed, original, ours in rows:
            for i in range(len(original)):
                f.write(f"{seed},{i},{original[i]:.6f},{ours[i]:.6f}\n")
    report(rows, args.windows)


def report(rows, windows):
    """Per window of steps: mean over pairs of (ours - original) with its standard error."""
    differences = np.array([ours - original for _, original, ours in rows])
    for window in np.array_split(np.arange(differences.shape[1]), windows):
        per_pair = differences[:, window].mean(axis=1)
        error = per_pair.std(ddof=1) / np.sqrt(len(per_pair)) if len(per_pair) > 1 else float("nan")
        print(f"steps {window[0]}-{window[-1]}: ours - original = {per_pair.mean():+.4f} +- {error:.4f} "
              f"(per pair: {' '.join(f'{d:+.3f}' for d in per_pair)})")


if __name__ == "__main__":
    main()
