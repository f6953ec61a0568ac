"""Time to quality over training settings: the default VAE trained under each setting and seed, in parallel
one-thread processes (as the study runs its trainings), on the default Gaussian (or Student t) dataset.

    .venv/bin/python benchmarks/training_settings.py [--settings NAME ...] [--seeds 0 1 2] [--parallel N]
                                                     [--model vae|ae] [--data gaussian|student_t]
                                                     [--device cpu|cuda] [--out FILE.json]

Each job trains with ``TrainConfig(**SETTINGS[name], seed=seed)`` and reports its epochs, training seconds
(the trainer's own clock: epochs and held-out loss, no evaluation) and the test split's mean Frobenius error
of the model it delivers. A table per setting gives the worst and mean test Frobenius over the seeds and the
mean training seconds: the setting to keep is the fastest whose worst seed stays within the quality target.
With ``--parallel`` equal to the cores every job shares the machine like the study's trainings do.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from statistics import mean

TORCH_BETAS = (0.9, 0.999)  # Adam's betas in every row measured before adam_betas existed


def _onecycle(learning_rate: float, epochs: int, batch_size: int, warmup_fraction: float = 0.3,
              adam_betas: tuple[float, float] = TORCH_BETAS, weight_decay: float = 0.0) -> dict:
    """Every setting spelled out, so that a change of the defaults does not change what a row measured."""
    return {"scheduler": "onecycle", "learning_rate": learning_rate, "epochs": epochs, "batch_size": batch_size,
            "warmup_fraction": warmup_fraction, "adam_betas": adam_betas, "weight_decay": weight_decay}


# Rows without "beta2" ran with torch's betas; rows without "weight decay" ran without it (TrainConfig's default
# until 2026-12-01). "onecycle 6e-3, 5 epochs, batch 32, warm-up 0.2, beta2 0.95, weight decay 3e-4" is the
# default since then; without the weight decay it was the default since adam_betas existed.
SETTINGS: dict[str, dict] = {
    "previous (plateau 2e-3, 20 epochs)": {"scheduler": "plateau", "learning_rate": 2e-3, "epochs": 20,
                                           "batch_size": 64, "adam_betas": TORCH_BETAS,
                                           "weight_decay": 0.0},
    "onecycle 4e-3, 12 epochs, batch 64": _onecycle(4e-3, 12, 64),
    "onecycle 4e-3, 8 epochs, batch 64": _onecycle(4e-3, 8, 64),
    "onecycle 6e-3, 8 epochs, batch 128": _onecycle(6e-3, 8, 128),
    "onecycle 6e-3, 6 epochs, batch 64": _onecycle(6e-3, 6, 64),
    "onecycle 8e-3, 6 epochs, batch 128": _onecycle(8e-3, 6, 128),
    "onecycle 4e-3, 8 epochs, batch 32, warm-up 0.2": _onecycle(4e-3, 8, 32, 0.2),
    "onecycle 4e-3, 8 epochs, batch 32, warm-up 0.1": _onecycle(4e-3, 8, 32, 0.1),
    "onecycle 4e-3, 8 epochs, batch 32": _onecycle(4e-3, 8, 32),
    "onecycle 4e-3, 7 epochs, batch 32, warm-up 0.2": _onecycle(4e-3, 7, 32, 0.2),
    "onecycle 3e-3, 9 epochs, batch 32": _onecycle(3e-3, 9, 32),
    "onecycle 4e-3, 6 epochs, batch 32": _onecycle(4e-3, 6, 32),
    "onecycle 3e-3, 6 epochs, batch 32": _onecycle(3e-3, 6, 32),
    "onecycle 3e-3, 5 epochs, batch 32": _onecycle(3e-3, 5, 32),
    "onecycle 3e-3, 5 epochs, batch 16": _onecycle(3e-3, 5, 16),
    "onecycle 3e-3, 4 epochs, batch 16": _onecycle(3e-3, 4, 16),
    "onecycle 4e-3, 6 epochs, batch 32, warm-up 0.2, beta2 0.99":
        _onecycle(4e-3, 6, 32, 0.2, (0.9, 0.99)),
    "onecycle 4e-3, 6 epochs, batch 32, warm-up 0.2, beta2 0.95":
        _onecycle(4e-3, 6, 32, 0.2, (0.9, 0.95)),
    "onecycle 4e-3, 6 epochs, batch 32, warm-up 0.2, beta2 0.9":
        _onecycle(4e-3, 6, 32, 0.2, (0.9, 0.9)),
    "onecycle 4e-3, 5 epochs, batch 32, warm-up 0.2, beta2 0.95":
        _onecycle(4e-3, 5, 32, 0.2, (0.9, 0.95)),
    "onecycle 4e-3, 5 epochs, batch 32, warm-up 0.2, beta2 0.9":
        _onecycle(4e-3, 5, 32, 0.2, (0.9, 0.9)),
    "onecycle 4e-3, 4 epochs, batch 32, warm-up 0.2, beta2 0.95":
        _onecycle(4e-3, 4, 32, 0.2, (0.9, 0.95)),
    "onecycle 3e-3, 5 epochs, batch 32, warm-up 0.2, beta2 0.95":
        _onecycle(3e-3, 5, 32, 0.2, (0.9, 0.95)),
    "onecycle 6e-3, 6 epochs, batch 32, warm-up 0.2, beta2 0.95":
        _onecycle(6e-3, 6, 32, 0.2, (0.9, 0.95)),
    "onecycle 6e-3, 5 epochs, batch 32, warm-up 0.2, beta2 0.95":
        _onecycle(6e-3, 5, 32, 0.2, (0.9, 0.95)),
    "onecycle 6e-3, 5 epochs, batch 32, warm-up 0.1, beta2 0.95":
        _onecycle(6e-3, 5, 32, 0.1, (0.9, 0.95)),
    "onecycle 6e-3, 5 epochs, batch 32, warm-up 0.2, beta2 0.9":
        _onecycle(6e-3, 5, 32, 0.2, (0.9, 0.9)),
    "onecycle 6e-3, 4 epochs, batch 32, warm-up 0.2, beta2 0.95":
        _onecycle(6e-3, 4, 32, 0.2, (0.9, 0.95)),
    "onecycle 6e-3, 4 epochs, batch 32, warm-up 0.2, beta2 0.9":
        _onecycle(6e-3, 4, 32, 0.2, (0.9, 0.9)),
    "onecycle 8e-3, 5 epochs, batch 32, warm-up 0.2, beta2 0.95":
        _onecycle(8e-3, 5, 32, 0.2, (0.9, 0.95)),
    "onecycle 8e-3, 4 epochs, batch 32, warm-up 0.2, beta2 0.95":
        _onecycle(8e-3, 4, 32, 0.2, (0.9, 0.95)),
    "onecycle 1.2e-2, 5 epochs, batch 32, warm-up 0.2, beta2 0.95":
        _onecycle(1.2e-2, 5, 32, 0.2, (0.9, 0.95)),
    "onecycle 8e-3, 5 epochs, batch 48, warm-up 0.2, beta2 0.95":
        _onecycle(8e-3, 5, 48, 0.2, (0.9, 0.95)),
    "onecycle 8e-3, 6 epochs, batch 64, warm-up 0.2, beta2 0.95":
        _onecycle(8e-3, 6, 64, 0.2, (0.9, 0.95)),
    "onecycle 6e-3, 5 epochs, batch 32, warm-up 0.2, beta1 0.8, beta2 0.95":
        _onecycle(6e-3, 5, 32, 0.2, (0.8, 0.95)),
    "onecycle 6e-3, 5 epochs, batch 32, warm-up 0.2, beta1 0.85, beta2 0.95":
        _onecycle(6e-3, 5, 32, 0.2, (0.85, 0.95)),
    "onecycle 6e-3, 5 epochs, batch 32, warm-up 0.2, beta1 0.95, beta2 0.95":
        _onecycle(6e-3, 5, 32, 0.2, (0.95, 0.95)),
    "onecycle 6e-3, 5 epochs, batch 32, warm-up 0.2, beta1 0.9, beta2 0.98":
        _onecycle(6e-3, 5, 32, 0.2, (0.9, 0.98)),
    "onecycle 6e-3, 4 epochs, batch 32, warm-up 0.2, beta1 0.8, beta2 0.95":
        _onecycle(6e-3, 4, 32, 0.2, (0.8, 0.95)),
    "onecycle 8e-3, 4 epochs, batch 32, warm-up 0.2, beta1 0.8, beta2 0.95":
        _onecycle(8e-3, 4, 32, 0.2, (0.8, 0.95)),
    "onecycle 8e-3, 5 epochs, batch 32, warm-up 0.2, beta1 0.8, beta2 0.95":
        _onecycle(8e-3, 5, 32, 0.2, (0.8, 0.95)),
    "onecycle 6e-3, 5 epochs, batch 32, warm-up 0.3, beta2 0.95":
        _onecycle(6e-3, 5, 32, 0.3, (0.9, 0.95)),
    "onecycle 6e-3, 5 epochs, batch 32, warm-up 0.2, beta2 0.95, weight decay 1e-5":
        _onecycle(6e-3, 5, 32, 0.2, (0.9, 0.95), 1e-5),
    "onecycle 6e-3, 5 epochs, batch 32, warm-up 0.2, beta2 0.95, weight decay 1e-4":
        _onecycle(6e-3, 5, 32, 0.2, (0.9, 0.95), 1e-4),
    "onecycle 6e-3, 5 epochs, batch 32, warm-up 0.2, beta2 0.95, weight decay 3e-4":
        _onecycle(6e-3, 5, 32, 0.2, (0.9, 0.95), 3e-4),
    "onecycle 6e-3, 5 epochs, batch 32, warm-up 0.2, beta2 0.95, weight decay 1e-3":
        _onecycle(6e-3, 5, 32, 0.2, (0.9, 0.95), 1e-3),
    "onecycle 6e-3, 5 epochs, batch 32, warm-up 0.2, beta2 0.95, weight decay 3e-3":
        _onecycle(6e-3, 5, 32, 0.2, (0.9, 0.95), 3e-3),
    "onecycle 6e-3, 4 epochs, batch 32, warm-up 0.2, beta2 0.95, weight decay 1e-4":
        _onecycle(6e-3, 4, 32, 0.2, (0.9, 0.95), 1e-4),
    "onecycle 6e-3, 5 epochs, batch 32, warm-up 0.2, beta2 0.95, start at lr / 10":
        {**_onecycle(6e-3, 5, 32, 0.2, (0.9, 0.95)), "initial_lr_divisor": 10.0},
    "onecycle 6e-3, 5 epochs, batch 32, warm-up 0.2, beta2 0.95, end at start lr / 100":
        {**_onecycle(6e-3, 5, 32, 0.2, (0.9, 0.95)), "final_lr_divisor": 100.0},
}


def _job(name: str, seed: int, model_kind: str, device: str, dataset_path: str, work: str) -> dict:
    import torch

    torch.set_num_threads(1)
    from latent_atlas.config import ModelConfig, TrainConfig
    from latent_atlas.data import load_dataset
    from latent_atlas.evaluation import evaluate_run
    from latent_atlas.training import train

    dataset = load_dataset(dataset_path)
    config = TrainConfig(**SETTINGS[name], seed=seed, device=device)
    run_dir = Path(work) / f"{abs(hash(name))}-{seed}"
    result = train(dataset, dataset_path, ModelConfig(kind=model_kind), config, run_dir, progress=False)
    frobenius = evaluate_run(result.run, dataset, device=device).results["test_frobenius"]["mean"]
    return {"setting": name, "seed": seed, "epochs": result.epochs_run, "seconds": result.seconds,
            "test_frobenius": frobenius}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS), metavar="NAME")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--parallel", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--model", choices=["vae", "ae"], default="vae")
    parser.add_argument("--data", choices=["gaussian", "student_t"], default="gaussian")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--out", type=Path, help="write every job's row as JSON here")
    args = parser.parse_args(argv)

    from latent_atlas.config import DataConfig
    from latent_atlas.data import make_dataset

    jobs = [(name, seed) for name in args.settings for seed in args.seeds]
    width = max(len(name) for name in args.settings)
    print(f"{len(jobs)} trainings of the default {args.model} on the {args.data} dataset, {args.parallel} at a "
          f"time, 1 torch thread each, on {args.device}", flush=True)
    with tempfile.TemporaryDirectory() as work:
        dataset_path = str(Path(work) / f"{args.data}.npz")
        make_dataset(DataConfig(kind=args.data)).save(dataset_path)
        with ProcessPoolExecutor(args.parallel, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(_job, name, seed, args.model, args.device, dataset_path, work)
                       for name, seed in jobs]
            rows = []
            for future in futures:
                rows.append(future.result())
                row = rows[-1]
                print(f"  {row['setting']:{width}s} seed {row['seed']}: {row['epochs']:2d} epochs, "
                      f"{row['seconds']:6.1f} s, test Frobenius {row['test_frobenius']:.4f}", flush=True)
    print(f"\n{'setting':{width}s} {'worst':>7s} {'mean':>7s} {'seconds':>8s}")
    for name in args.settings:
        mine = [r for r in rows if r["setting"] == name]
        print(f"{name:{width}s} {max(r['test_frobenius'] for r in mine):7.4f} "
              f"{mean(r['test_frobenius'] for r in mine):7.4f} {mean(r['seconds'] for r in mine):8.1f}")
    if args.out:
        args.out.write_text(json.dumps({"parallel": args.parallel, "device": args.device, "model": args.model,
                                        "data": args.data, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
