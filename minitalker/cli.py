"""The command line: ``minitalker data|train|evaluate|generate|demo``.

Each subcommand is a thin wrapper: it parses arguments and calls one function of the package,
so everything the CLI does can be done from Python (and from the notebooks) the same way.
An expected error (a missing, corrupt or unsupported file, no face, a bad value, an unwritable
output) is one line, ``minitalker: error: <what is wrong> — <what to do>``, and exit status 1;
``--debug`` shows the traceback instead. Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import sys

USER_ERRORS = (OSError, ValueError, ModuleNotFoundError)  # NoFaceError and damaged checkpoints are ValueErrors


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minitalker", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="on an error, show the Python traceback")
    sub = parser.add_subparsers(dest="command", required=True)
    data = sub.add_parser("data", help="build the built-in corpus or import real recordings")
    data_cmds = data.add_subparsers(dest="data_command", required=True)
    train = sub.add_parser("train", help="train agent 1 (landmarks), agent 2 (faces) or the metrics' landmark regressor")
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
    p = sub.add_parser("demo", help="the main job: speech + a held-out face -> outputs/demo/talking_face.mp4 + figures")
    p.add_argument("--preset", choices=("fast", "full"), help="default: $MINITALKER_PRESET, else by hardware")
    p.add_argument("--out", default="outputs/demo", help="output folder")
    p.add_argument("--train", action="store_true", help="retrain both agents instead of loading the shipped weights")
    p.add_argument("--steps", type=int, help="DDIM steps (default: the checkpoint's)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: the checkpoint's)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_demo)
    p = train_cmds.add_parser("landmarks", help="train agent 1, the landmark completion transformer")
    p.add_argument("--preset", choices=("fast", "full"), help="default: $MINITALKER_PRESET, else by hardware")
    p.add_argument("--out", help="run folder (default: outputs/landmarks_<preset>)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/last exactly where it stopped")
    p.add_argument("--front-end", choices=("mel", "phones", "mel+phones"), help="what the audio tokens read: the "
                   "log-mel, the phones pocketsphinx recognises, or both (default: the preset's)")
    p.add_argument("--recogniser", choices=("loop", "words"), help="with phones: pocketsphinx's phone loop, or its "
                   "word recogniser followed by alignment of the words' phones (default: loop)")
    p.add_argument("--true-phones", type=float, metavar="P", help="with phones: this fraction of training chunks reads "
                   "the corpus's own phones instead of the heard ones (default: the preset's)")
    p.add_argument("--real-voices", type=int, metavar="N", help="also train on the real voices (human speech, the "
                   "rig's mouths on its aligned phones), each on N faces; 0: espeak only (default: the preset's)")
    p.add_argument("--teacher", metavar="PATH", help="learn what this agent-1 checkpoint predicts on the same chunks "
                   "(distillation; e.g. data/checkpoints/landmarks_fast); with --n-layers, a smaller, faster student")
    p.add_argument("--teacher-weight", type=float, metavar="W", help="with --teacher: the loss towards the teacher's "
                   "prediction counts W, the loss towards the corpus's landmarks 1 - W (default 1)")
    p.add_argument("--n-layers", type=int, metavar="N", help="frame blocks of the model (default: the preset's)")
    p.add_argument("--export", metavar="PATH", help="then write the best weights as fp16 + test metrics to PATH "
                   "(e.g. data/checkpoints/landmarks_fast)")
    p.set_defaults(func=_train_landmarks)
    p = evaluate_cmds.add_parser("landmarks", help="agent 1 vs copy / mean-mouth / ridge baselines, per phoneme class")
    p.add_argument("--checkpoint", help="checkpoint path without suffix (default: the shipped fast one)")
    p.add_argument("--corpus", choices=("fast", "full"), help="corpus preset (default: the one it was trained on)")
    p.add_argument("--real", action="store_true", help="score on real human speech instead (CMU ARCTIC with phone "
                   "timings): lip closure on p/b/m vs open vowels, open-vowel r, audio-visual offset")
    p.add_argument("--json", help="also write the results as JSON here")
    p.set_defaults(func=_evaluate_landmarks)
    p = train_cmds.add_parser("faces", help="train agent 2, the landmark-conditioned face diffusion UNet")
    p.add_argument("--preset", choices=("fast", "full"), help="default: $MINITALKER_PRESET, else by hardware")
    p.add_argument("--out", help="run folder (default: outputs/faces_<preset>)")
    p.add_argument("--steps", type=int, help="stop at this step (default: the preset's schedule length)")
    p.add_argument("--fresh", action="store_true", help="start over instead of resuming from <out>/last")
    p.set_defaults(func=_train_faces)
    p = train_cmds.add_parser("regressor", help="train the landmark regressor that measures landmarks on small frames "
                                                "for the metrics (true corpus frames only)")
    p.add_argument("--preset", choices=("fast", "full"), help="corpus and model preset (default: $MINITALKER_PRESET)")
    p.add_argument("--size", type=int, help="crop side of the corpus (default: the preset's)")
    p.add_argument("--steps", type=int, help="training steps (default: the preset's, 1200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="checkpoint path without suffix (default: data/checkpoints/landmark_regressor_fast)")
    p.set_defaults(func=_train_regressor)
    p = sub.add_parser("generate", help="any speech + any face photo -> a talking-face mp4 with the sound, at the "
                                        "photo's resolution (the generated face pasted back; at most 1024 px a side)")
    p.add_argument("--audio", required=True, help="speech: wav/flac/mp3 or a video's sound track")
    p.add_argument("--face", required=True, help="a photo with one (frontal) face: RGB, RGBA or grey")
    p.add_argument("--out", required=True, help="output .mp4 (its folder must exist)")
    p.add_argument("--crop", action="store_true", help="write only the generated face crop, enlarged 4x, "
                   "instead of the whole photo")
    p.add_argument("--steps", type=int, help="DDIM steps (default: the checkpoint's)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: the checkpoint's)")
    p.add_argument("--strength", type=float, help="fraction of the DDIM steps run, starting from the photo warped to "
                   "the landmarks (1 = from pure noise; default: the checkpoint's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preset", choices=("fast", "full"), help="which shipped weights (only fast ones ship)")
    p.add_argument("--landmarks", help="agent 1 checkpoint (default: the shipped one)")
    p.add_argument("--faces", help="agent 2 checkpoint (default: the shipped one)")
    p.add_argument("--backend", default="dlib", choices=("dlib", "face_alignment"), help="face detector for the photo")
    p.set_defaults(func=_generate)
    p = evaluate_cmds.add_parser("faces", help="agent 2 vs the copied reference: PSNR/SSIM (frame, mouth), LMD, jitter")
    p.add_argument("--checkpoint", help="checkpoint path without suffix (default: the shipped fast one)")
    p.add_argument("--corpus", choices=("fast", "full"), help="corpus preset (default: $MINITALKER_PRESET)")
    p.add_argument("--clips", type=int, default=4, help="held-out clips per group")
    p.add_argument("--steps", type=int, help="DDIM steps (default: 25; 10 with --real)")
    p.add_argument("--ddpm-frames", type=int, default=8, help="frames also sampled by 1000-step DDPM (slow on CPU)")
    p.add_argument("--real", action="store_true",
                   help="score on real material instead: the carphone clip re-enacted, and unseen photos (grace_hopper "
                        "and $MINITALKER_REAL_PHOTOS) driven by a real voice: obedience, tint, identity")
    p.add_argument("--frames", type=int, help="with --real: carphone frames to re-enact (default: all 120)")
    p.add_argument("--json", help="also write the results as JSON here")
    p.set_defaults(func=_evaluate_faces)
    p = evaluate_cmds.add_parser("sync", help="SyncNet lip-sync scores of a video with sound: LSE-D, LSE-C and the "
                                              "audio-visual offset, as Wav2Lip reports them")
    p.add_argument("--syncnet", required=True, help="syncnet_v2.model (from syncnet_python's download_model.sh; "
                   "never downloaded here)")
    p.add_argument("--video", required=True, help="a video with sound, e.g. from `minitalker generate`")
    face = p.add_mutually_exclusive_group()
    face.add_argument("--box", type=float, nargs=4, metavar=("X0", "Y0", "X1", "Y1"),
                      help="the face box in pixels, the same in every frame (default: dlib on every frame)")
    face.add_argument("--full-frame", action="store_true",
                      help="the video is already a face crop (generate --crop): score whole frames")
    p.add_argument("--json", help="also write the results as JSON here")
    p.set_defaults(func=_evaluate_sync)
    # Each room adds its leaves below: p = data_cmds.add_parser(...); p.set_defaults(func=...),
    # with the handler importing its module lazily so that `minitalker --help` stays fast.
    return parser


def _corpus_config(args):
    from minitalker.data.synthetic import CorpusConfig

    cfg = CorpusConfig.preset(args.preset)
    return dataclasses.replace(cfg, image_size=args.size) if getattr(args, "size", None) else cfg


def _data_build(args) -> None:
    from minitalker.data.synthetic import build_corpus, load_corpus

    cfg = _corpus_config(args)
    if args.force:
        build_corpus(cfg, args.root)
    print(load_corpus(cfg, args.root))


def _data_import(args) -> None:
    from minitalker.data.importers import import_videos

    print(import_videos(args.src, args.out, layout=args.layout, backend=args.backend, size=args.size))


def _demo(args) -> None:
    from minitalker.demo import run_demo

    for name, path in run_demo(args.preset, args.out, train=args.train, steps=args.steps, guidance=args.guidance,
                               seed=args.seed).items():
        print(f"wrote {name}: {path}")


def warn(message: str) -> None:
    print(f"minitalker: warning: {message}", file=sys.stderr)


def _generate(args) -> None:
    """Everything checkable first (output, arguments, audio, photo, the checkpoint's schedule), then the
    models load, the face is found, and frames are streamed to the video as they are made."""
    from minitalker.audio import audio_warnings, load_audio, n_video_frames
    from minitalker.face_agent import check_sampling, face_agent_config
    from minitalker.pipeline import TalkingFacePipeline, load_photo
    from minitalker.video import check_output

    if args.preset == "full" and args.faces is None:
        raise ValueError("no full-size checkpoints are shipped — train them (`minitalker train faces --preset full`, "
                         "`minitalker train landmarks --preset full`) and pass --faces/--landmarks")
    out = check_output(args.out)
    if out.exists():
        warn(f"{out} exists — it will be replaced when the new video is complete")
    wav = load_audio(args.audio)
    for message in audio_warnings(wav):
        warn(message)
    photo = load_photo(args.face)
    _, schedule, agent = face_agent_config(args.faces)  # the JSON alone: no model loads before the checks pass
    check_sampling(schedule, args.steps, agent.guidance_scale if args.guidance is None else args.guidance,
                   agent.strength if args.strength is None else args.strength)
    pipe = TalkingFacePipeline.from_checkpoints(args.landmarks, args.faces, backend=args.backend)
    pipe.write(out, wav, photo, crop=args.crop, steps=args.steps, guidance=args.guidance, strength=args.strength,
               seed=args.seed)
    print("wrote", out, f"({n_video_frames(len(wav))} frames)")


def _train_landmarks(args) -> None:
    import os
    import shlex
    import sys

    from minitalker.nn.landmark_transformer import LandmarkTransformerConfig
    from minitalker.train.landmarks import LandmarkTrainConfig, export_landmark_model, format_results, train_landmarks

    model_cfg = LandmarkTransformerConfig.preset(args.preset)
    if args.front_end:  # the linear path reads the log-mel: without it, there is none
        model_cfg = dataclasses.replace(model_cfg, front_end=args.front_end,
                                        linear_path=model_cfg.linear_path and "mel" in args.front_end)
    train_cfg = LandmarkTrainConfig.preset(args.preset)
    if args.recogniser:
        model_cfg = dataclasses.replace(model_cfg, recogniser=args.recogniser)
    if args.true_phones is not None:
        train_cfg = dataclasses.replace(train_cfg, p_true_phones=args.true_phones)
    if args.real_voices is not None:
        train_cfg = dataclasses.replace(train_cfg, real_voices=args.real_voices)
    if args.teacher:
        train_cfg = dataclasses.replace(train_cfg, teacher=args.teacher)
    if args.teacher_weight is not None:
        if not args.teacher:
            raise ValueError("--teacher-weight weighs the loss towards a teacher: give --teacher PATH too")
        train_cfg = dataclasses.replace(train_cfg, teacher_weight=args.teacher_weight)
    if args.n_layers:
        model_cfg = dataclasses.replace(model_cfg, n_layers=args.n_layers)
    run = train_landmarks(args.preset, args.out, resume=args.resume, model_cfg=model_cfg, train_cfg=train_cfg)
    print("trained:", run)
    if args.export:
        threads = os.environ.get("OMP_NUM_THREADS")  # part of how it was made: it changes the timing
        command = (f"OMP_NUM_THREADS={threads} " if threads else "") + shlex.join(["minitalker", *sys.argv[1:]])
        info = export_landmark_model(run, args.export, command=command)
        print(format_results(info["test_results"]))
        print("exported:", args.export)


def _evaluate_landmarks(args) -> None:
    from minitalker.io import write_json
    from minitalker.nn.landmark_transformer import load_landmark_model
    from minitalker.train.landmarks import evaluate_landmarks, format_results

    model = load_landmark_model(args.checkpoint)
    if args.real:
        from minitalker.lipsync import evaluate_landmarks_real, format_lipsync

        results = evaluate_landmarks_real(model)
        print(format_lipsync(results))
    else:
        results = evaluate_landmarks(model, args.corpus)  # None: the corpus it was trained on
        print(format_results(results))
    if args.json:
        write_json(args.json, results)


def _train_faces(args) -> None:
    from minitalker.train.faces import train_faces

    train_faces(args.preset, args.out, resume=not args.fresh, stop_at=args.steps)


def _train_regressor(args) -> None:
    import shlex

    from minitalker.nn.landmark_regressor import CHECKPOINT
    from minitalker.train.landmark_regressor import train_and_save_regressor

    out = args.out or CHECKPOINT
    report = train_and_save_regressor(args.preset, args.size, args.steps, args.seed, out,
                                      command=shlex.join(["minitalker", *sys.argv[1:]]))
    for k, v in report.items():
        print(f"{k:24s} {v:.4f}")
    print("wrote", out)


def _evaluate_faces(args) -> None:
    from minitalker.io import write_json

    if args.real:
        from minitalker.face_eval import evaluate_faces_real, format_real_results

        results = evaluate_faces_real(args.checkpoint, n_frames=args.frames, steps=args.steps or 10)
        print(format_real_results(results))
    else:
        from minitalker.train.faces import evaluate_faces, format_face_results

        results = evaluate_faces(args.checkpoint, args.corpus, clips_per_group=args.clips, steps=args.steps or 25,
                                 ddpm_frames=args.ddpm_frames)
        print(format_face_results(results))
    if args.json:
        write_json(args.json, results)


def _evaluate_sync(args) -> None:
    from minitalker.io import write_json
    from minitalker.syncnet import evaluate_sync, format_sync, load_syncnet

    results = evaluate_sync(load_syncnet(args.syncnet), args.video, box=args.box, full_frame=args.full_frame)
    print(format_sync(results))
    if args.json:
        write_json(args.json, results)


def main(argv: list[str] | None = None) -> None:
    """Run one command. Expected errors (:data:`USER_ERRORS`) end as one line on stderr and exit status 1,
    Ctrl-C as one line and 130; anything else is a bug and keeps its traceback. ``--debug``: always the traceback."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
    except USER_ERRORS as e:
        if args.debug:
            raise
        print(f"minitalker: error: {' '.join(str(e).split()) or type(e).__name__}", file=sys.stderr)
        sys.exit(1)
    else:
        return
    # interrupted; out of the except block the traceback is gone, so what it held suspended (a generator's
    # progress bar) is finalised now, and prints before the last line, not at interpreter exit after it
    gc.collect()
    print("minitalker: interrupted", file=sys.stderr)
    sys.exit(130)


if __name__ == "__main__":
    main()
