"""The command line: ``minitalker data|train|evaluate|generate|demo``.

Each subcommand is a thin wrapper: it parses arguments and calls one function of the package,
so everything the CLI does can be done from Python (and from the notebooks) the same way.
"""

from __future__ import annotations

import argparse
import dataclasses


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minitalker", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    data = sub.add_parser("data", help="build the built-in corpus or import real recordings")
    data_cmds = data.add_subparsers(dest="data_command", required=True)
    train = sub.add_parser("train", help="train agent 1 (landmarks) or agent 2 (faces)")
    train_cmds = train.add_subparsers(dest="train_command", required=True)
    evaluate = sub.add_parser("evaluate", help="metrics and baselines for either agent")
    evaluate_cmds = evaluate.add_subparsers(dest="evaluate_command", required=True)
    p = data_cmds.add_parser("build", help="build the built-in corpus (espeak speech + warped real photos)")
    p.add_argument("--preset", choices=("fast", "full"), help="default: $MINITALKER_PRESET, else by hardware")
    p.add_argument("--size", type=int, help="crop side in pixels (default: 64 fast, 128 full; 256 on request)")
    p.add_argument("--root", help="corpus folder (default: the cache folder named after the config)")
    p.add_argument("--force", action="store_true", help="rebuild even if the corpus exists")
    p.set_defaults(func=_data_build)
    p = data_cmds.add_parser("import", help="import real recordings (GRID layout or any talking-head videos)")
    p.add_argument("layout", choices=("grid", "videos"))
    p.add_argument("src", help="folder of the recordings (see minitalker.data.importers for layouts)")
    p.add_argument("--out", required=True, help="new corpus folder")
    p.add_argument("--backend", default="dlib", choices=("dlib", "face_alignment"), help="landmark detector")
    p.add_argument("--size", type=int, default=128, help="crop side in pixels")
    p.set_defaults(func=_data_import)
    p = sub.add_parser("demo", help="the main job: build the corpus if needed, write its overview and a sample clip")
    p.add_argument("--preset", choices=("fast", "full"), help="default: $MINITALKER_PRESET, else by hardware")
    p.add_argument("--out", default="outputs/demo", help="output folder")
    p.set_defaults(func=_demo)
    p = train_cmds.add_parser("landmarks", help="train agent 1, the landmark completion transformer")
    p.add_argument("--preset", choices=("fast", "full"), help="default: $MINITALKER_PRESET, else by hardware")
    p.add_argument("--out", help="run folder (default: outputs/landmarks_<preset>)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/last exactly where it stopped")
    p.add_argument("--export", metavar="PATH", help="then write the best weights as fp16 + test metrics to PATH "
                   "(e.g. data/checkpoints/landmarks_fast)")
    p.set_defaults(func=_train_landmarks)
    p = evaluate_cmds.add_parser("landmarks", help="agent 1 vs copy / mean-mouth / ridge baselines, per phoneme class")
    p.add_argument("--checkpoint", help="checkpoint path without suffix (default: the shipped fast one)")
    p.add_argument("--corpus", choices=("fast", "full"), help="corpus preset (default: the one it was trained on)")
    p.add_argument("--json", help="also write the results as JSON here")
    p.set_defaults(func=_evaluate_landmarks)
    # Each room adds its leaves below: p = data_cmds.add_parser(...); p.set_defaults(func=...),
    # with the handler importing its module lazily so that `minitalker --help` stays fast.
    return parser


def _corpus_config(args):
    from minitalker.data.corpus import CorpusConfig

    cfg = CorpusConfig.preset(args.preset)
    return dataclasses.replace(cfg, image_size=args.size) if getattr(args, "size", None) else cfg


def _data_build(args) -> None:
    from minitalker.data.corpus import build_corpus, load_corpus

    cfg = _corpus_config(args)
    if args.force:
        build_corpus(cfg, args.root)
    print(load_corpus(cfg, args.root))


def _data_import(args) -> None:
    from minitalker.data.importers import import_videos

    print(import_videos(args.src, args.out, layout=args.layout, backend=args.backend, size=args.size))


def _demo(args) -> None:
    from minitalker.data.corpus import load_corpus
    from minitalker.data.overview import write_sample

    corpus = load_corpus(_corpus_config(args))
    print(corpus)
    for path in write_sample(corpus, args.out):
        print("wrote", path)


def _train_landmarks(args) -> None:
    import shlex
    import sys

    from minitalker.train.landmarks import export_landmark_model, format_results, train_landmarks

    run = train_landmarks(args.preset, args.out, resume=args.resume)
    print("trained:", run)
    if args.export:
        info = export_landmark_model(run, args.export, command=shlex.join(["minitalker", *sys.argv[1:]]))
        print(format_results(info["test_results"]))
        print("exported:", args.export)


def _evaluate_landmarks(args) -> None:
    from minitalker.io import write_json
    from minitalker.nn.landmark_transformer import load_landmark_model
    from minitalker.train.landmarks import evaluate_landmarks, format_results

    model = load_landmark_model(args.checkpoint)
    results = evaluate_landmarks(model, args.corpus or model.meta["train_config"]["corpus"])
    print(format_results(results))
    if args.json:
        write_json(args.json, results)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
