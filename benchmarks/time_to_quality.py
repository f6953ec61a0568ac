"""Time to quality: latent-atlas's default VAE against pythae's TrainingPipeline, side by side in one process.

    .venv-bench/bin/python benchmarks/time_to_quality.py [--threads 1] [--seed 0] [--pythae-cap 300]
                                                          [--cap-clock wall|cpu] [--previous] [--pythae-batch N]
                                                          [--pythae-betas B1 B2]
                                                          [--train KEY=VALUE ...] [--out FILE.json]
    .venv/bin/python benchmarks/time_to_quality.py --summarise SEED0.json SEED1.json ... [--goal 5]

Needs pythae (0.1.2), installed in its own virtualenv so the project's stays as pinned:

    python3 -m venv .venv-bench && .venv-bench/bin/pip install -c constraints.txt -e . pythae

1. latent-atlas trains the default VAE (``TrainConfig()``, or with ``--train`` overrides) on the default
   Gaussian dataset; its target is the test split's mean Frobenius error of the model it delivers.
2. pythae trains the same architecture (our encoder and decoder modules wrapped as ``BaseEncoder`` /
   ``BaseDecoder``, same initial weights) on the same training and held-out images with Adam, the same batch
   size (``--pythae-batch`` to change it), learning rate 2e-3 and ReduceLROnPlateau(factor 0.5, patience 1) on
   the held-out loss: the settings of the issue (pythae steps schedulers once per epoch, so it cannot run a
   per-batch one-cycle schedule). Adam keeps torch's betas (0.9, 0.999), as pythae's pipeline does;
   ``--pythae-betas 0.9 0.95`` gives it ours, to see how much of the difference they make.
   After every epoch its current weights are evaluated with the same metric, and it stops as soon as they
   reach the target, or after ``--pythae-cap`` seconds of training (wall-clock, or CPU seconds with
   ``--cap-clock cpu``, the fairer cap on a machine shared with other work).
3. ``--previous`` also trains with the project's previous defaults (plateau, 20 epochs) for comparison.
4. ``--interleave N`` (default 3) then times N more epochs of each trainer alternately (ours: a fresh run's
   epoch with its held-out loss and checkpoint; pythae: ``train_step`` + ``eval_step``), so that both see the
   same machine load, and estimates each time to quality as epochs needed x median epoch cost.

5. ``--summarise`` reads the ``--out`` files of several runs (one per training seed) and prints each seed's
   ratio, as run and interleaved (wall clock), their geometric mean with a 95 % t interval over the seeds
   (of the log ratios), and a one-sided t test of "the ratio exceeds --goal" (scipy.stats); pythae is not
   needed for it.

Evaluation after each epoch runs outside every timing. Times are wall-clock and process CPU seconds; with
one torch thread the CPU seconds are the single-core cost, less disturbed by other processes than the wall
clock but not immune to them (shared caches): on a busy machine trust the interleaved estimate most.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from functools import partial
from pathlib import Path
from statistics import median

PREVIOUS_DEFAULTS = {"scheduler": "plateau", "learning_rate": 2e-3, "batch_size": 64, "epochs": 20,
                     "adam_betas": (0.9, 0.999), "weight_decay": 0.0}
PYTHAE_SETTINGS = {"learning_rate": 2e-3, "scheduler_factor": 0.5, "scheduler_patience": 1}  # + our batch size


class _Stop(Exception):
    pass


@dataclass
class Clock:
    """Training time with the evaluation pauses taken out."""

    wall: float = 0.0
    cpu: float = 0.0
    _wall_mark: float = field(default_factory=time.perf_counter)
    _cpu_mark: float = field(default_factory=time.process_time)

    def pause(self) -> None:
        self.wall += time.perf_counter() - self._wall_mark
        self.cpu += time.process_time() - self._cpu_mark

    def resume(self) -> None:
        self._wall_mark, self._cpu_mark = time.perf_counter(), time.process_time()


@dataclass
class Curve:
    name: str
    settings: dict
    epochs: list[dict] = field(default_factory=list)  # epoch, test Frobenius of the current weights, times
    final_frobenius: float | None = None  # of the model the run delivers (latent-atlas: best held-out epoch)
    reached_at: dict | None = None  # the first epoch whose weights reach the target, if any
    epoch_costs: list[dict] = field(default_factory=list)  # interleaved epochs: wall_s, cpu_s each

    def add(self, epoch: int, frobenius: float, clock: Clock) -> None:
        self.epochs.append({"epoch": epoch, "test_frobenius": frobenius, "wall_s": clock.wall, "cpu_s": clock.cpu})

    def mark_target(self, target: float) -> None:
        self.reached_at = next((row for row in self.epochs if row["test_frobenius"] <= target), None)


def test_frobenius(model, dataset) -> float:
    from latent_atlas.evaluation import frobenius_errors
    from latent_atlas.models.inference import reconstruct

    images = dataset.images[dataset.test_idx]
    return float(frobenius_errors(images, reconstruct(model, images)).mean())


def _timed(epoch) -> dict:
    wall, cpu = time.perf_counter(), time.process_time()
    epoch()
    return {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}


def latent_atlas_trainer(dataset, dataset_path: Path, train_config, run_dir: Path):
    from latent_atlas.config import ModelConfig
    from latent_atlas.training.trainer import Trainer

    return Trainer(dataset, dataset_path, ModelConfig(kind="vae"), train_config, run_dir, progress=False)


def train_latent_atlas(name: str, dataset, dataset_path: Path, train_config, run_dir: Path) -> Curve:
    from latent_atlas.training.trainer import Trainer

    curve = Curve(name=name, settings=train_config.to_dict())
    clock = Clock()
    trainer = latent_atlas_trainer(dataset, dataset_path, train_config, run_dir)

    def on_epoch(t: Trainer) -> None:
        clock.pause()
        curve.add(t.epoch, test_frobenius(t.model, dataset), clock)
        print(f"  {name} epoch {t.epoch:3d}: test Frobenius {curve.epochs[-1]['test_frobenius']:.4f}  "
              f"{clock.wall:6.1f} s wall  {clock.cpu:6.1f} s CPU", flush=True)
        clock.resume()

    result = trainer.fit(on_epoch=on_epoch)
    curve.final_frobenius = test_frobenius(result.run.load_model(), dataset)
    curve.reached_at = {"epoch": result.epochs_run, "test_frobenius": curve.final_frobenius,
                        "wall_s": clock.wall, "cpu_s": clock.cpu}
    return curve


def train_pythae(dataset, fit_images, val_images, seed: int, batch_size: int, betas: tuple[float, float] | None,
                 target: float, cap_seconds: float, cap_clock: str, work_dir: Path):
    """pythae's curve, and its trainer (for the interleaved epochs)."""
    import torch
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.pipelines import TrainingPipeline
    from pythae.trainers import BaseTrainerConfig, training_callbacks
    from pythae.trainers.training_callbacks import TrainingCallback

    from latent_atlas.config import ModelConfig
    from latent_atlas.training.trainer import initialised_model

    ours = initialised_model(ModelConfig(kind="vae").for_images(dataset.image_shape), seed, torch.device("cpu"))

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.encoder, self.to_posterior = ours.encoder, ours.to_posterior

        def forward(self, x):
            mean, logvar = self.to_posterior(self.encoder(x)).chunk(2, dim=1)  # (B, D) each
            return ModelOutput(embedding=mean, log_covariance=logvar)

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.decoder = ours.decoder

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.decoder(z)))  # (B, 1, H, W) in (0, 1)

    settings = {**PYTHAE_SETTINGS, "batch_size": batch_size, "adam_betas": betas or "torch's (0.9, 0.999)",
                "cap_seconds": cap_seconds, "cap_clock": cap_clock}
    curve = Curve(name="pythae", settings=settings)
    clock = Clock()

    class Evaluate(TrainingCallback):
        def on_epoch_end(self, training_config, **kwargs):
            clock.pause()
            curve.add(len(curve.epochs) + 1, test_frobenius(ours, dataset), clock)  # ours shares pythae's modules
            row = curve.epochs[-1]
            print(f"  pythae epoch {row['epoch']:3d}: test Frobenius {row['test_frobenius']:.4f}  "
                  f"{clock.wall:6.1f} s wall  {clock.cpu:6.1f} s CPU", flush=True)
            if row["test_frobenius"] <= target or row[f"{cap_clock}_s"] >= cap_seconds:
                raise _Stop
            clock.resume()

    training_callbacks.tqdm = partial(training_callbacks.tqdm, disable=True)  # no per-batch bars in the log
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("pythae"):
            logging.getLogger(name).setLevel(logging.WARNING)  # pythae sets its own loggers to INFO
    model = VAE(VAEConfig(input_dim=(1, *dataset.image_shape), latent_dim=3, reconstruction_loss="bce"),
                encoder=Encoder(), decoder=Decoder())
    config = BaseTrainerConfig(
        output_dir=str(work_dir), num_epochs=10_000, learning_rate=PYTHAE_SETTINGS["learning_rate"],
        per_device_train_batch_size=batch_size, per_device_eval_batch_size=1024,
        optimizer_cls="Adam", optimizer_params={"betas": tuple(betas)} if betas else None,
        scheduler_cls="ReduceLROnPlateau",
        scheduler_params={"factor": PYTHAE_SETTINGS["scheduler_factor"],
                          "patience": PYTHAE_SETTINGS["scheduler_patience"]},
        no_cuda=True, seed=seed,
    )
    pipeline = TrainingPipeline(model=model, training_config=config)
    clock.resume()
    try:
        pipeline(train_data=fit_images, eval_data=val_images, callbacks=[Evaluate()])
    except _Stop:
        pass
    curve.mark_target(target)
    return curve, pipeline.trainer


def interleaved_epochs(n: int, ours, theirs, ours_curve: Curve, theirs_curve: Curve) -> None:
    """Time ``n`` epochs of each trainer alternately, so that both meet the same load."""
    ours._prepare_folder(resume=False)
    for i in range(n):
        ours_curve.epoch_costs.append(_timed(ours._run_epoch))
        epoch = len(theirs_curve.epochs) + i + 1
        theirs_curve.epoch_costs.append(_timed(lambda e=epoch: (theirs.train_step(e), theirs.eval_step(e))))


def estimate(curve: Curve, clock: str) -> float | None:
    """Epochs to the target x the median interleaved epoch cost."""
    if curve.reached_at is None or not curve.epoch_costs:
        return None
    return curve.reached_at["epoch"] * median(cost[f"{clock}_s"] for cost in curve.epoch_costs)


def seed_ratios(document: dict) -> dict[str, float]:
    """One ``--out`` file's speed-ups over pythae (wall clock): as run, and from the interleaved epoch costs."""
    known = {f.name for f in fields(Curve)}
    curves = {row["name"]: Curve(**{"settings": {}, **{k: v for k, v in row.items() if k in known}})
              for row in document["curves"]}
    ours, theirs = curves["latent-atlas"], curves["pythae"]
    if theirs.reached_at is None:
        raise SystemExit(f"time_to_quality: in the seed {document['seed']} file pythae never reached the target")
    ratios = {"as run": theirs.reached_at["wall_s"] / ours.reached_at["wall_s"]}
    mine, their = estimate(ours, "wall"), estimate(theirs, "wall")
    if mine and their:
        ratios["interleaved"] = their / mine
    return ratios


def ratio_summary(ratios: list[float], goal: float) -> dict[str, float]:
    """Geometric mean of per-seed ratios, its 95 % t interval and the one-sided p of "above goal", on the logs."""
    import numpy as np
    from scipy import stats

    logs = np.log(ratios)
    low, high = stats.t.interval(0.95, len(logs) - 1, loc=logs.mean(), scale=stats.sem(logs))
    above = stats.ttest_1samp(logs, np.log(goal), alternative="greater")
    return {"geometric_mean": float(np.exp(logs.mean())), "low": float(np.exp(low)), "high": float(np.exp(high)),
            "p_above_goal": float(above.pvalue), "n": len(logs)}


def _read_out_file(path: Path) -> dict:
    try:
        document = json.loads(path.read_text())
        int(document["seed"])
        names = {curve["name"] for curve in document["curves"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"time_to_quality: {path} is not a readable --out file of this script ({exc!r})") from None
    if not names >= {"latent-atlas", "pythae"}:
        raise SystemExit(f"time_to_quality: {path} holds no latent-atlas and pythae curves to compare")
    return document


def summarise(paths: list[Path], goal: float) -> int:
    documents = sorted((_read_out_file(path) for path in paths), key=lambda d: d["seed"])
    per_seed = [(d["seed"], seed_ratios(d)) for d in documents]
    for seed, ratios in per_seed:
        print(f"seed {seed}: " + ", ".join(f"{kind} {value:.2f}x" for kind, value in ratios.items()))
    for kind in ("as run", "interleaved"):
        values = [ratios[kind] for _, ratios in per_seed if kind in ratios]
        if len(values) < 2:
            continue
        s = ratio_summary(values, goal)
        print(f"{kind}: geometric mean {s['geometric_mean']:.2f}x over {s['n']} seeds, 95 % t interval "
              f"{s['low']:.2f}-{s['high']:.2f}x; above {goal:g}x: one-sided t p = {s['p_above_goal']:.3f}; "
              f"{sum(v < goal for v in values)} of {len(values)} seeds below {goal:g}x")
    return 0


def _overrides(pairs: list[str]) -> dict:
    values = {}
    for pair in pairs:
        key, _, text = pair.partition("=")
        try:
            values[key] = json.loads(text)
        except json.JSONDecodeError:
            values[key] = text
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the study runs 1 per training)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (the data split is fixed)")
    parser.add_argument("--pythae-cap", type=float, default=300.0, help="seconds of pythae training at most")
    parser.add_argument("--cap-clock", choices=["wall", "cpu"], default="wall", help="the clock the cap reads")
    parser.add_argument("--previous", action="store_true", help="also train with the previous defaults")
    parser.add_argument("--interleave", type=int, default=3, metavar="N", help="epochs of each timed alternately")
    parser.add_argument("--pythae-batch", type=int, metavar="N",
                        help="pythae's batch size (default: latent-atlas's, as the issue's comparison asks)")
    parser.add_argument("--pythae-betas", type=float, nargs=2, metavar=("B1", "B2"),
                        help="pythae's Adam betas (default: torch's, 0.9 0.999, as its pipeline uses)")
    parser.add_argument("--train", nargs="*", default=[], metavar="KEY=VALUE", help="TrainConfig overrides")
    parser.add_argument("--out", type=Path, help="write every curve as JSON here")
    parser.add_argument("--summarise", type=Path, nargs="+", metavar="FILE.json",
                        help="summarise the --out files of several seeds instead of training")
    parser.add_argument("--goal", type=float, default=5.0, help="the speed-up --summarise tests against")
    args = parser.parse_args(argv)
    if args.summarise:
        return summarise(args.summarise, args.goal)
    try:
        import pythae  # noqa: F401
    except ImportError as exc:
        print(f"time_to_quality: pythae is not importable ({exc}); install it in a separate virtualenv: "
              "python3 -m venv .venv-bench && .venv-bench/bin/pip install -c constraints.txt -e . pythae",
              file=sys.stderr)
        return 2

    import torch

    from latent_atlas.config import DataConfig, TrainConfig
    from latent_atlas.data import make_dataset
    from latent_atlas.data.dataset import validation_split
    from latent_atlas.training.trainer import images_tensor

    torch.set_num_threads(args.threads)
    dataset = make_dataset(DataConfig())
    train_config = TrainConfig(seed=args.seed, **_overrides(args.train))
    fit_idx, val_idx = validation_split(dataset.train_idx, train_config.validation_fraction, args.seed)
    cpu = torch.device("cpu")
    curves = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        dataset.save(work / "gaussian.npz")
        print(f"latent-atlas {'default' if not args.train else 'with ' + ' '.join(args.train)} "
              f"({train_config.scheduler}, {train_config.epochs} epochs, batch {train_config.batch_size}, "
              f"lr {train_config.learning_rate}, Adam betas {train_config.adam_betas}, "
              f"weight decay {train_config.weight_decay}, {train_config.precision}), "
              f"{args.threads} torch thread(s)")
        ours = train_latent_atlas("latent-atlas", dataset, work / "gaussian.npz", train_config, work / "ours")
        curves.append(ours)
        target = ours.final_frobenius
        if args.previous:
            print("latent-atlas, previous defaults")
            previous = TrainConfig(seed=args.seed, **PREVIOUS_DEFAULTS)
            curves.append(train_latent_atlas("previous defaults", dataset, work / "gaussian.npz", previous,
                                             work / "previous"))
        pythae_batch = args.pythae_batch or train_config.batch_size
        betas_text = f", Adam betas {tuple(args.pythae_betas)}" if args.pythae_betas else ""
        print(f"pythae TrainingPipeline (batch {pythae_batch}{betas_text}) until test Frobenius <= {target:.4f} or "
              f"{args.pythae_cap:.0f} s ({args.cap_clock})")
        theirs, pythae_trainer = train_pythae(dataset, images_tensor(dataset, fit_idx, cpu),
                                              images_tensor(dataset, val_idx, cpu), args.seed, pythae_batch,
                                              args.pythae_betas, target,
                                              args.pythae_cap, args.cap_clock, work / "pythae")
        curves.append(theirs)
        if args.interleave:
            print(f"{args.interleave} epochs of each, alternately")
            fresh = latent_atlas_trainer(dataset, work / "gaussian.npz", train_config, work / "interleaved")
            interleaved_epochs(args.interleave, fresh, pythae_trainer, ours, theirs)

    print(f"\ntarget: test Frobenius {target:.4f} (latent-atlas's delivered model)")
    for curve in curves:
        last = curve.epochs[-1]
        if curve.reached_at is None:
            print(f"  {curve.name:18s} did not reach it within {last['wall_s']:.0f} s wall / {last['cpu_s']:.0f} s CPU "
                  f"({last['epoch']} epochs; best {min(r['test_frobenius'] for r in curve.epochs):.4f})")
        else:
            reached = curve.reached_at
            print(f"  {curve.name:18s} {reached['test_frobenius']:.4f} after {reached['epoch']:3d} epochs: "
                  f"{reached['wall_s']:7.1f} s wall  {reached['cpu_s']:7.1f} s CPU")
    ours_time = ours.reached_at
    if theirs.reached_at is not None:
        print(f"speed-up over pythae, as run: {theirs.reached_at['wall_s'] / ours_time['wall_s']:.1f}x wall, "
              f"{theirs.reached_at['cpu_s'] / ours_time['cpu_s']:.1f}x CPU")
    else:
        last = theirs.epochs[-1]
        print(f"speed-up over pythae, as run: more than {last['wall_s'] / ours_time['wall_s']:.1f}x wall, "
              f"{last['cpu_s'] / ours_time['cpu_s']:.1f}x CPU (pythae did not reach the target)")
    if ours.epoch_costs:
        for curve in (ours, theirs):
            costs = curve.epoch_costs
            print(f"  {curve.name:18s} interleaved epoch cost: "
                  + ", ".join(f"{c['wall_s']:.1f}/{c['cpu_s']:.1f}" for c in costs) + " s wall/CPU")
        for clock in ("wall", "cpu"):
            mine, their = estimate(ours, clock), estimate(theirs, clock)
            if mine and their:
                print(f"speed-up over pythae, interleaved estimate ({clock}): {their / mine:.1f}x "
                      f"({theirs.reached_at['epoch']} x {their / theirs.reached_at['epoch']:.1f} s against "
                      f"{ours.reached_at['epoch']} x {mine / ours.reached_at['epoch']:.1f} s)")
    if args.out:
        args.out.write_text(json.dumps({"threads": args.threads, "seed": args.seed, "target": target,
                                        "curves": [asdict(c) for c in curves]}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
