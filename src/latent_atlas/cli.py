"""Command line: parse, call the library, print. Bad input exits with status 2 and one line on stderr."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .errors import AtlasError

EXIT_USAGE = 2
DATASET_NAMES = {"gaussian": "gaussian", "student-t": "student_t"}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the problem, not a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _output(text: str) -> str:
    """An output path: not empty (an empty -o would write into the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return text


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


def _cmd_data(args: argparse.Namespace) -> None:
    from .config import DataConfig, build, load_toml, section
    from .data import make_dataset

    values = section(load_toml(args.config), "data")
    config = build(DataConfig, values, section="data", kind=DATASET_NAMES[args.kind], seed=args.seed)
    if Path(args.output).is_dir():
        raise AtlasError(f"-o {args.output} is a folder; give a file name such as {args.output}/gaussian.npz")
    dataset = make_dataset(config)
    dataset.save(args.output)
    print(
        f"wrote {args.output}: {len(dataset)} images {dataset.image_shape[0]}x{dataset.image_shape[1]}, "
        f"factors {', '.join(dataset.factor_names)}, {len(dataset.train_idx)} train / {len(dataset.test_idx)} test, "
        f"sha256 {dataset.content_hash[:12]}"
    )


def _cmd_train(args: argparse.Namespace) -> None:
    from .config import ModelConfig, TrainConfig, build, load_toml, section
    from .data import load_dataset
    from .training import train

    document = load_toml(args.config)
    model_config = build(
        ModelConfig, section(document, "model"), section="model", kind=args.model, latent_dim=args.latent_dim,
        beta=args.beta, condition=args.condition,
    )
    train_config = build(
        TrainConfig, section(document, "train"), section="train", epochs=args.epochs, seed=args.seed,
        device=args.device, batch_size=args.batch_size, precision=args.precision,
    )
    dataset = load_dataset(args.data)
    from .graph.executor import limit_threads

    with limit_threads(args.threads):  # the thread count is part of what fixes the weights bit for bit
        result = train(dataset, args.data, model_config, train_config, args.output, resume=args.resume,
                       progress=not args.quiet, tracking=args.track)
    print(
        f"trained {model_config.kind} for {result.epochs_run} epochs in {result.seconds:.1f} s "
        f"({result.images_per_second:,.0f} images/s); best held-out loss {result.best_val_loss:.3f} "
        f"at epoch {result.best_epoch}; run folder {args.output}"
    )


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from .evaluation import evaluate_run
    from .training import load_run
    from .training.trainer import resolve_device

    run = load_run(args.run_dir)
    resolve_device(args.device)
    dataset = run.load_dataset(args.data) if args.data else None
    results = evaluate_run(run, dataset, device=args.device).results
    print(f"{run.kind} {args.run_dir}: test Frobenius error over {results['n_test_images']} images")
    print("  " + "  ".join(f"{k} {v:.4f}" for k, v in results["test_frobenius"].items()))
    if "test_elbo" in results:
        print("  " + "  ".join(f"{k} {v:.3f}" for k, v in results["test_elbo"].items()))


def _graph_options(args: argparse.Namespace) -> dict:
    return {"backend": args.backend, "address": args.address, "max_parallel": args.max_parallel,
            "progress": not args.quiet, "tracking": args.track}


def _cmd_study(args: argparse.Namespace) -> None:
    from .config import load_toml
    from .study import run_study, study_config_from
    from .study.summary import study_summary

    sections = tuple(s for part in (args.with_sections or []) for s in part.split(",") if s)
    config = study_config_from(load_toml(args.config), quick=args.quick, sections=sections)
    result = run_study(config, Path(args.output), report=not args.no_report, **_graph_options(args))
    print(study_summary(result))
    if args.no_report and (Path(args.output) / "report.html").is_file():
        print(f"note: {Path(args.output) / 'report.html'} is from an earlier run and was not redrawn (--no-report); "
              "it may not match these results")


def _cmd_sweep(args: argparse.Namespace) -> None:
    from .config import load_toml
    from .study.sweep import run_sweep

    path = run_sweep(load_toml(args.config), Path(args.output), **_graph_options(args))
    rows = path.read_text(encoding="utf-8").splitlines()
    print("\n".join(rows[: 1 + 20]))
    if len(rows) > 21:
        print(f"... {len(rows) - 21} more rows")
    print(f"\nwrote {path}: {len(rows) - 1} runs")


def _cmd_explore(args: argparse.Namespace) -> None:
    from .explorer import serve

    serve(args.folders, host=args.host, port=args.port)


def _cmd_oracle(args: argparse.Namespace) -> None:
    import numpy as np

    from .config import DataConfig
    from .data import load_dataset, make_dataset
    from .io import read_npz, write_text
    from .oracle import HeatmapOracle

    if Path(args.output).is_dir():
        raise AtlasError(f"-o {args.output} is a folder; give a file name such as {args.output}/verdicts.csv")
    family = None if args.family is None else args.family.replace("-", "_")
    arrays = read_npz(args.images, what="images file")
    if "images" not in arrays:
        raise AtlasError(f"{args.images} has no 'images' array (it has {', '.join(sorted(arrays)) or 'nothing'})")
    images = arrays["images"]
    if images.dtype.kind not in "biuf":
        raise AtlasError(f"{args.images}: images must be numbers, got dtype {images.dtype}")
    if images.ndim != 3:
        raise AtlasError(f"{args.images}: images must have shape (N, H, W), got shape {images.shape}")
    if len(images) == 0:
        raise AtlasError(f"{args.images} holds no images (its 'images' array has shape {images.shape})")
    if not np.all(np.isfinite(images)):
        raise AtlasError(f"{args.images}: images contain NaN or infinite values")
    if args.data is not None:
        dataset = load_dataset(args.data)
        if family is not None and family != dataset.config.kind:
            raise AtlasError(f"--family {family} conflicts with --data {args.data}, a {dataset.config.kind} dataset")
    else:
        dataset = make_dataset(DataConfig(kind=family or "gaussian"))
    if images.shape[1:] != dataset.image_shape:
        source = args.data or "the default data config"
        raise AtlasError(f"{args.images}: images are {images.shape[1]}x{images.shape[2]} but the grid of {source} is "
                         f"{dataset.image_shape[0]}x{dataset.image_shape[1]}")
    oracle = HeatmapOracle.for_dataset(dataset, shape_threshold=args.shape_threshold)
    verdict = oracle.verdict(images)
    write_text(args.output, verdict.to_csv())
    summary = verdict.summary()
    fractions = ", ".join(f"{key} {summary[key]:.3f}" if summary[key] is not None else f"{key} -"
                          for key in ("shape_ok", "in_range", "valid"))
    print(f"wrote {args.output}: {summary['n']} images, {dataset.config.kind} oracle, shape threshold "
          f"{verdict.shape_threshold:g}; {fractions}")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be between 0 and 65535, got {value}")
    return value


def _add_graph_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=["ray", "local"], default="ray",
                        help="ray (default): a local Ray instance on 127.0.0.1, or the cluster at --address; "
                        "local: one task at a time in this process")
    parser.add_argument("--address", metavar="ADDRESS", help="join the Ray cluster at this address instead of "
                        "starting a local instance (the output folder must be on a path every node shares)")
    parser.add_argument("--max-parallel", type=_positive_int, metavar="N",
                        help="at most N tasks at once (default: the CPUs Ray has)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    _add_tracking_option(parser)


def _add_tracking_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--track", choices=["none", "tensorboard"], default="none",
                        help="log parameters, per-epoch and final metrics of every training to TensorBoard "
                        "(RUN_DIR/tensorboard; needs the tensorboard package); default none")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="latent-atlas", description="Map what an autoencoder's latent space has learned.")
    parser.add_argument("--version", action="version", version=f"latent-atlas {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    data = commands.add_parser("data", help="generate a heatmap dataset (.npz)",
                               description="Generate a heatmap dataset with known factors into one .npz file.")
    data.add_argument("kind", choices=["gaussian", "student-t"], help="bivariate normal or Student t densities")
    data.add_argument("-o", "--output", type=_output, required=True, metavar="FILE.npz", help="where to write the dataset")
    data.add_argument("--config", metavar="F.toml", help="TOML file whose [data] table overrides the defaults")
    data.add_argument("--seed", type=_non_negative_int, help="random seed (df noise, random factors, split)")
    data.set_defaults(handler=_cmd_data)

    train = commands.add_parser("train", help="train an AE or VAE into a run folder",
                                description="Train a convolutional AE or VAE; writes config.json, "
                                "model.safetensors, history.csv and metrics.json into RUN_DIR.")
    train.add_argument("--data", required=True, metavar="FILE.npz", help="dataset from `latent-atlas data`")
    train.add_argument("--model", choices=["vae", "ae", "cvae"], default="vae", help="model kind (default vae)")
    train.add_argument("--condition", choices=["var_x", "var_y", "rho", "df"],
                       help="cvae only: the factor its encoder and decoder are conditioned on")
    train.add_argument("-o", "--output", type=_output, required=True, metavar="RUN_DIR", help="run folder to create")
    train.add_argument("--latent-dim", type=_positive_int, help="latent dimension (default 3)")
    train.add_argument("--beta", type=float, help="weight of the KL term (default 1)")
    train.add_argument("--epochs", type=_positive_int, help="maximum number of epochs (default 5)")
    train.add_argument("--batch-size", type=_positive_int, help="batch size (default 32)")
    train.add_argument("--seed", type=_non_negative_int, help="seed for init, shuffling and sampling (default 0)")
    train.add_argument("--device", choices=["cpu", "cuda"], help="where to train (default cpu)")
    train.add_argument("--precision", choices=["float32", "bfloat16"],
                       help="bfloat16: autocast the training step (faster on CPUs with AMX / AVX-512 BF16; "
                       "default float32)")
    train.add_argument("--resume", action="store_true", help="continue an interrupted run in RUN_DIR")
    train.add_argument("--threads", type=_positive_int, default=1,
                       help="CPU threads (default 1, as every study and sweep task trains: the same config, seed "
                            "and thread count give the same weights bit for bit; another count gives others)")
    train.add_argument("--config", metavar="F.toml", help="TOML file with [model] and [train] tables")
    train.add_argument("-q", "--quiet", action="store_true", help="no progress bar or per-epoch lines")
    _add_tracking_option(train)
    train.set_defaults(handler=_cmd_train)

    evaluate = commands.add_parser("evaluate", help="test-set reconstruction error of a run",
                                   description="Evaluate a run on its dataset's test split; writes metrics.json "
                                   "(test_frobenius: mean, median, p90, p99, max) and evaluation.npz.")
    evaluate.add_argument("run_dir", metavar="RUN_DIR")
    evaluate.add_argument("--data", metavar="FILE.npz", help="dataset path, if it moved since training")
    evaluate.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    evaluate.set_defaults(handler=_cmd_evaluate)

    study = commands.add_parser("study", help="reproduce the whole seed study over training seeds",
                                description="Build both datasets, train every (dataset, model, seed) run, run "
                                "every analysis, aggregate over seeds and write the report into DIR. A second run "
                                "in the same folder redoes only what changed; a killed one resumes.")
    study.add_argument("-o", "--output", type=_output, default="study", metavar="DIR", help="output folder (default ./study)")
    study.add_argument("--quick", action="store_true", help="small data, few epochs, two seeds: a demo in minutes")
    study.add_argument("--config", metavar="F.toml", help="TOML file with [data], [model], [train], [study]")
    study.add_argument("--with", dest="with_sections", action="append", metavar="SECTIONS",
                       help="optional sections to add, comma-separated: dimensions (the latent-dimension study), "
                       "toolbox (beta sweep, conditional VAE, the second seed's techniques)")
    study.add_argument("--no-report", action="store_true", help="compute everything but the HTML report")
    _add_graph_options(study)
    study.set_defaults(handler=_cmd_study)

    sweep = commands.add_parser("sweep", help="train and evaluate a grid of runs (Ray)",
                                description="Run every point of the [sweep] grid of CONFIG.toml (dotted keys such as "
                                "\"model.kind\" = [\"vae\", \"ae\"], \"train.seed\" = [0, 1, 2]; [data], [model], "
                                "[train] set the fixed values) and write DIR/results.csv, one row per run.")
    sweep.add_argument("config", metavar="CONFIG.toml", help="TOML file with a [sweep] table")
    sweep.add_argument("-o", "--output", type=_output, required=True, metavar="DIR", help="output folder")
    _add_graph_options(sweep)
    sweep.set_defaults(handler=_cmd_sweep)

    oracle = commands.add_parser("oracle", help="the oracle's verdict on images (.npz) as CSV",
                                 description="Fit the density family back to every image of IMAGES.npz (an "
                                 "'images' array (N, H, W); a dataset file works) and write one CSV row per image: "
                                 "recovered factors, residual, shape residual, shape_ok, in_range, valid, failure, "
                                 "novelty and the nearest training image. The factor box and training images come "
                                 "from --data, else from the default data config.")
    oracle.add_argument("images", metavar="IMAGES.npz", help="an .npz with an 'images' array (N, H, W)")
    oracle.add_argument("--data", metavar="DATASET.npz", help="dataset giving the grid, family, factor box and "
                        "training images (default: the default data config, generated in memory)")
    oracle.add_argument("--family", choices=["gaussian", "student_t", "student-t"],
                        help="density family (default: the dataset's, else gaussian)")
    oracle.add_argument("--shape-threshold", type=_positive_float, metavar="T",
                        help="largest shape residual still a heatmap (default: the corruption benchmark's rule "
                        "for the data's grid)")
    oracle.add_argument("-o", "--output", type=_output, required=True, metavar="VERDICTS.csv", help="where to write the CSV")
    oracle.set_defaults(handler=_cmd_oracle)

    explore = commands.add_parser("explore", help="interactive latent explorer in the browser",
                                  description="Serve a local web app: click anywhere in latent space and see the "
                                  "decoded heatmap; compare any two runs through the images both encode. Runs are "
                                  "loaded when first shown, so a study with dozens of runs starts at once.")
    explore.add_argument("folders", nargs="+", metavar="DIR",
                         help="run folders, or study / sweep folders (every run in their runs/)")
    explore.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1, loopback only)")
    explore.add_argument("--port", type=_port, default=8000, help="port (default 8000; 0 picks a free one)")
    explore.set_defaults(handler=_cmd_explore)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except AtlasError as exc:
        print(f"latent-atlas {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # an output path that cannot be created or written, a full disk, ...
        where = f": {exc.filename}" if exc.filename else ""
        print(f"latent-atlas {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM during a Ray-backed run (graph.ray_backend.Terminated)
        ray_backend = sys.modules.get("latent_atlas.graph.ray_backend")
        terminated = ray_backend is not None and ray_backend.terminated()
        print(f"latent-atlas {args.command}: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 143 if terminated else 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
