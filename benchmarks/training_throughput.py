"""Training and inference throughput of the default model on synthetic 36x36 batches.

    .venv/bin/python benchmarks/training_throughput.py [--device cpu|cuda] [--seconds 3]

Prints images/second for a training step (forward, backward, Adam) at several batch sizes, and for
encoding / decoding without gradients. Bounded: each measurement runs for about --seconds.
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import torch

from latent_atlas.config import ModelConfig
from latent_atlas.models import build_model


def _rate(step, batch_size: int, seconds: float, device: torch.device) -> float:
    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        step()
        count += batch_size
    if device.type == "cuda":
        torch.cuda.synchronize()
    return count / (time.perf_counter() - started)


def _train_step(model, optimizer, images: torch.Tensor, generator: torch.Generator) -> None:
    parts = model.loss(images, sample=True, generator=generator)
    optimizer.zero_grad(set_to_none=True)
    parts.total.backward()
    optimizer.step()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}")
    for kind in ("vae", "ae"):
        torch.manual_seed(0)
        model = build_model(ModelConfig(kind=kind).for_images((36, 36))).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        generator = torch.Generator(device=device).manual_seed(0)
        for batch_size in (32, 64, 128, 256):
            images = torch.rand(batch_size, 1, 36, 36, device=device)
            step = partial(_train_step, model, optimizer, images, generator)
            print(f"{kind} train step   batch {batch_size:4d}: {_rate(step, batch_size, args.seconds, device):9,.0f} images/s")
        images = torch.rand(1024, 1, 36, 36, device=device)
        codes = torch.randn(1024, model.latent_dim, device=device)
        with torch.inference_mode():
            for label, step, size in (("encode       batch 1024", partial(model.encode, images), 1024),
                                      ("decode       batch 1024", partial(model.decode, codes), 1024),
                                      ("decode       batch    1", partial(model.decode, codes[:1]), 1)):
                print(f"{kind} {label}: {_rate(step, size, args.seconds, device):9,.0f} images/s")


if __name__ == "__main__":
    main()
