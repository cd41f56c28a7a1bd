"""How much compute does agent 2 need per second of video? (target: ≤ 8 s per second of 64 px
video with 10 DDIM steps on 2 CPU cores), and how fast does it train?

* **sampling**: seconds of wall time per second of 25 fps video (warp, masks, the UNet, colour match)
  at the default settings (10 DDIM steps from the warp at ``strength`` 0.5: 5 UNet passes a frame,
  guidance 1) for clips of 25 / 50 / 100 frames, and from pure noise (``strength`` 1) for 10 / 25 / 50
  steps, with guidance 1.5 (which doubles the passes), and at 128 px (the fast architecture at twice
  the size: what resolution costs);
* **training**: images per second of full training steps (forward, backward, AdamW) at batch 16.

Weights do not change speed: a fresh UNet of the fast face-agent configuration is timed.
Writes ``benchmarks/results/face_generation_<device>.json`` and prints a table.
Usage: ``python benchmarks/face_generation.py [--threads N] [--device cpu|cuda]``
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from minitalker.diffusion.schedule import NoiseSchedule
from minitalker.face_agent import generate_frames
from minitalker.io import write_json
from minitalker.nn.unet import LandmarkUNet
from minitalker.train.faces import FaceRun

RESULTS = Path(__file__).parent / "results"


def face_inputs(size: int, frames: int):
    """A real reference crop (Grace Hopper) and a landmark track whose jaw opens and closes: speed does
    not depend on content, but the warp needs a real face's landmarks (random points fold)."""
    from minitalker.data.synthetic import reference_face

    ref, lm = reference_face("grace_hopper", size)
    track = np.repeat(lm[None], frames, 0)
    drop = 0.04 * size * (1 - np.cos(np.linspace(0, 6 * np.pi, frames)))[:, None] / 2  # (T, 1) px
    track[:, [*range(5, 12), *range(55, 60), 65, 66, 67], 1] += drop
    return ref, lm, track


def time_sampling(run: FaceRun, size: int, frames: int, steps: int, guidance: float, strength: float,
                  device: str) -> float:
    unet = LandmarkUNet(dataclasses.replace(run.unet, image_size=size)).to(device).eval()
    ref, ref_lm, lms = face_inputs(size, frames)
    schedule = NoiseSchedule(run.diffusion)
    generate_frames(unet, schedule, ref, ref_lm, lms[:2], run.agent, steps=1, guidance=1.0, progress=False)  # warm-up
    t0 = time.perf_counter()
    generate_frames(unet, schedule, ref, ref_lm, lms, run.agent, steps=steps, guidance=guidance, strength=strength,
                    progress=False)
    return time.perf_counter() - t0


def time_training(run: FaceRun, device: str, batch: int = 16, iters: int = 3) -> float:
    unet = LandmarkUNet(run.unet).to(device)
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    S = run.unet.image_size
    x, cond = torch.randn(batch, 3, S, S, device=device), torch.randn(batch, run.unet.cond_channels, S, S, device=device)
    lm, t = torch.rand(batch, 68, 2, device=device) * 2 - 1, torch.randint(0, 1000, (batch,), device=device)
    times = []
    for i in range(iters + 1):
        t0 = time.perf_counter()
        unet(x, t, cond, lm).square().mean().backward()
        opt.step()
        opt.zero_grad()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return batch / min(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run = FaceRun.preset("fast")
    out = {"device": args.device, "threads": args.threads, "cpu_count": os.cpu_count(), "torch": torch.__version__,
           "machine": platform.processor() or platform.machine(), "load_average": os.getloadavg(),
           "unet": run.unet.to_dict(), "sampling": [], "training_images_per_s": time_training(run, args.device)}
    print(f"training: {out['training_images_per_s']:.1f} images/s (batch 16, 64 px)")
    print(f"{'size':>5} {'frames':>7} {'steps':>6} {'guidance':>9} {'strength':>9} {'wall s':>8} {'s per video s':>14}")
    g, s = run.agent.guidance_scale, run.agent.strength  # the defaults
    for size, frames, steps, guidance, strength in [
            (64, 25, 10, g, s), (64, 50, 10, g, s), (64, 100, 10, g, s), (64, 25, 10, 1.0, 1.0), (64, 25, 10, 1.5, 1.0),
            (64, 25, 25, 1.0, 1.0), (64, 25, 50, 1.0, 1.0), (128, 25, 10, g, s)]:
        wall = time_sampling(run, size, frames, steps, guidance, strength, args.device)
        row = {"size": size, "frames": frames, "steps": steps, "guidance": guidance, "strength": strength,
               "wall_s": wall, "s_per_video_s": wall / (frames / 25)}
        out["sampling"].append(row)
        print(f"{size:5d} {frames:7d} {steps:6d} {guidance:9.1f} {strength:9.1f} {wall:8.2f} {row['s_per_video_s']:14.2f}")
    RESULTS.mkdir(exist_ok=True)
    write_json(RESULTS / f"face_generation_{args.device}.json", out)


if __name__ == "__main__":
    main()
