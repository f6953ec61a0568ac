"""Training and inference throughput of the default model on synthetic 36x36 batches.

    .venv/bin/python benchmarks/training_throughput.py [--device cpu|cuda] [--threads N] [--seconds 2] [--repeats 3]
                                                       [--ensemble K] [--inference-only]

Prints images/second for a training step (forward, backward, Adam) at several batch sizes, for the trainer's
setup (channels_last memory format on the CPU, fused Adam), the same with ``precision = "bfloat16"`` (bfloat16
autocast of the forward pass) and a plain one (row-major tensors, Adam's default for-loop implementation),
measured interleaved and repeated so that a busy machine disturbs them alike; then encoding / decoding without gradients through ``models.inference``, for row-major and
channels_last weights at batches of 64, 256 and 1024. ``--ensemble K`` also compares K models trained as one
vectorised ensemble (``torch.func.stack_module_state`` + ``vmap``) against the same K models stepped one after
another. Rates are by wall clock and by process CPU time (with one thread, the single-core cost).
Bounded: each measurement runs for about --seconds.
"""

from __future__ import annotations

import argparse
import copy
import time
from functools import partial
from statistics import median

import numpy as np
import torch
from torch.func import functional_call, stack_module_state, vmap

from latent_atlas.config import ModelConfig
from latent_atlas.models import build_model
from latent_atlas.models.inference import decode, encode
from latent_atlas.models.likelihood import reconstruction_nll
from latent_atlas.training.trainer import training_autocast

SETUPS = {
    "trainer, bfloat16 autocast": dict(channels_last=True, fused=True, precision="bfloat16"),
    "trainer (channels_last, fused Adam)": dict(channels_last=True, fused=True),
    "plain (row-major, for-loop Adam)": dict(channels_last=False, fused=False),
}


def _rates(step, images_per_step: int, seconds: float, device: torch.device) -> tuple[float, float]:
    """(images per wall second, images per CPU second) of ``step`` run for about ``seconds``."""
    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    count, wall, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - wall < seconds:
        step()
        count += images_per_step
    if device.type == "cuda":
        torch.cuda.synchronize()
    return count / (time.perf_counter() - wall), count / (time.process_time() - cpu)


def _model(kind: str, seed: int, device: torch.device, channels_last: bool = False):
    torch.manual_seed(seed)
    model = build_model(ModelConfig(kind=kind).for_images((36, 36))).to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def _train_step(model, optimizer, images: torch.Tensor, generator: torch.Generator, precision: str) -> None:
    with training_autocast(images.device, precision):
        parts = model.loss(images, sample=True, generator=generator)
    optimizer.zero_grad(set_to_none=True)
    parts.total.backward()
    optimizer.step()


def _setup_step(kind: str, batch_size: int, device: torch.device, channels_last: bool, fused: bool,
                precision: str = "float32"):
    model = _model(kind, 0, device, channels_last and device.type == "cpu")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused or None)
    images = torch.rand(batch_size, 1, 36, 36, device=device)
    if channels_last and device.type == "cpu":
        images = images.contiguous(memory_format=torch.channels_last)
    generator = torch.Generator(device=device).manual_seed(0)
    return partial(_train_step, model, optimizer, images, generator, precision)


def _vae_loss(model, images: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The VAE's training loss with the posterior noise passed in (vmap cannot draw from a generator)."""
    posterior = model.encode(images)
    codes = posterior.mean + torch.exp(0.5 * posterior.logvar) * noise  # (B, D)
    reconstruction = reconstruction_nll(model.decode(codes), images, model.config.likelihood).mean()
    return reconstruction + model.config.beta * model.kl_divergence(posterior).mean()


def _ensemble_steps(k: int, batch_size: int, device: torch.device):
    """One step of K separate models, and one step of the same K models as a vmapped ensemble."""
    models = [_model("vae", seed, device) for seed in range(k)]
    images = torch.rand(k, batch_size, 1, 36, 36, device=device)
    noise = torch.randn(k, batch_size, models[0].latent_dim, device=device)
    optimizers = [torch.optim.Adam(m.parameters(), lr=1e-3) for m in models]

    def separate() -> None:
        for model, optimizer, x, eps in zip(models, optimizers, images, noise):
            optimizer.zero_grad(set_to_none=True)
            _vae_loss(model, x, eps).backward()
            optimizer.step()

    template = copy.deepcopy(models[0]).to("meta")
    template.forward = partial(_vae_loss, template)  # functional_call swaps each member's weights into it
    params, buffers = stack_module_state(copy.deepcopy(models))
    params = {name: p.detach().requires_grad_() for name, p in params.items()}
    optimizer = torch.optim.Adam(params.values(), lr=1e-3, foreach=True)

    def member_loss(p, b, x, eps):
        return functional_call(template, (p, b), (x, eps), {}, strict=True)

    def ensemble() -> None:
        optimizer.zero_grad(set_to_none=True)
        vmap(member_loss)(params, buffers, images, noise).sum().backward()
        optimizer.step()

    return separate, ensemble


def _time_inference(kind: str, device: torch.device, seconds: float, repeats: int) -> None:
    """Encoding and decoding through ``models.inference`` (what evaluation and the analyses call) for each
    weight layout and batch size, interleaved; the explorer's single-code decode last."""
    images = np.random.default_rng(0).random((4096, 36, 36), dtype=np.float32)
    codes = np.random.default_rng(1).standard_normal((4096, 3)).astype(np.float32)
    setups = {}
    for layout in ("row-major", "channels_last"):
        model = _model(kind, 0, device, channels_last=layout == "channels_last" and device.type == "cpu").eval()
        for batch in (64, 256, 1024):
            setups[f"encode {layout:13s} batch {batch:4d}"] = (partial(encode, model, images, batch), len(images))
            setups[f"decode {layout:13s} batch {batch:4d}"] = (partial(decode, model, codes, batch), len(codes))
        setups[f"decode {layout:13s} one code  "] = (partial(decode, model, codes[:1]), 1)
    rates = {name: [] for name in setups}
    for _ in range(repeats):
        for name, (step, size) in setups.items():
            rates[name].append(_rates(step, size, seconds / 4, device))
    for name, measured in rates.items():
        print(f"{kind} {name}: {median(r[0] for r in measured):9,.0f} / {median(r[1] for r in measured):9,.0f} "
              "images/s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--inference-only", action="store_true", help="skip the training steps")
    parser.add_argument("--ensemble", type=int, default=0, metavar="K", help="also time a K-model vmap ensemble")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}; "
          f"median of {args.repeats} interleaved runs, images/s by wall clock / by CPU time")
    for kind in ("vae", "ae"):
        for batch_size in () if args.inference_only else (64, 128, 256):
            steps = {name: _setup_step(kind, batch_size, device, **setup) for name, setup in SETUPS.items()}
            rates = {name: [] for name in steps}
            for _ in range(args.repeats):
                for name, step in steps.items():
                    rates[name].append(_rates(step, batch_size, args.seconds, device))
            base = list(steps)[-1]
            for name, measured in rates.items():
                ratios = [cpu / base_cpu for (_, cpu), (_, base_cpu) in zip(measured, rates[base])]
                print(f"{kind} train step batch {batch_size:4d}  {name:36s} "
                      f"{median(r[0] for r in measured):7,.0f} / {median(r[1] for r in measured):7,.0f}  "
                      f"CPU-rate ratio to plain {min(ratios):.2f}-{max(ratios):.2f}")
        _time_inference(kind, device, args.seconds, args.repeats)
    if args.ensemble:
        separate, ensemble = _ensemble_steps(args.ensemble, 64, device)
        rates = {"separate": [], "ensemble": []}
        for _ in range(args.repeats):
            rates["separate"].append(_rates(separate, args.ensemble * 64, args.seconds, device))
            rates["ensemble"].append(_rates(ensemble, args.ensemble * 64, args.seconds, device))
        ratios = [e[1] / s[1] for e, s in zip(rates["ensemble"], rates["separate"])]
        for name, measured in rates.items():
            print(f"vae {args.ensemble} models batch 64, {name:9s}: {median(r[0] for r in measured):7,.0f} / "
                  f"{median(r[1] for r in measured):7,.0f} images/s")
        print(f"ensemble / separate CPU-rate ratio: {min(ratios):.2f}-{max(ratios):.2f}")


if __name__ == "__main__":
    main()
