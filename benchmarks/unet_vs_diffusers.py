"""Our LandmarkUNet against diffusers' UNet2DConditionModel at a matched architecture.

Matched: widths (block_out_channels), blocks per level (layers_per_block), cross-attention
transformers at the same levels (CrossAttnDownBlock2D / CrossAttnUpBlock2D; diffusers always puts
self-attention in them, so ours does too here), a cross-attention mid block, scale-shift timestep
modulation, cross_attention_dim = token_dim, 68 context tokens, the same heads, GroupNorm groups
and input channels (noisy target + reference + masked target). Also measured: our ``fast`` preset
as shipped (cross-attention at 16x16 and 8x8, self-attention at 8x8 only).

For each model and image size we report forward and training-step (AdamW) throughput in
images/s (the models take turns, round robin, and the best of ``--iters`` rounds is kept, so that
a busy spell on a shared machine hits them all alike), the peak memory of a training step (CPU:
growth of the max resident set over the built model, in a fresh process per model; CUDA:
torch.cuda.max_memory_allocated), the FLOPs of one forward (torch.utils.flop_counter, with the CPU
fused-attention kernels registered) and the GFLOP/s achieved, next to the best rate of a 2048^2
fp32 matmul timed in the same rounds: the practical peak. On CPU also the single-thread CPU time
per image (time.process_time), the comparison that survives a machine shared with other jobs.

    python benchmarks/unet_vs_diffusers.py               # CPU (and CUDA when present), ~minutes
    python benchmarks/unet_vs_diffusers.py --sizes 64 --iters 2

Writes benchmarks/results/unet_vs_diffusers_<device>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula, sdpa_backward_flop_count, sdpa_flop_count

from minitalker.nn.unet import LandmarkUNet, UNetConfig

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = ("minitalker", "diffusers", "diffusers-channels_last", "minitalker-fast-preset")


# The CPU fused-attention kernels have no FLOP formula in torch; they compute what the CUDA ones do.
@register_flop_formula(torch.ops.aten._scaled_dot_product_flash_attention_for_cpu)
def _cpu_sdpa_flop(q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(q_shape, k_shape, v_shape)


@register_flop_formula(torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward)
def _cpu_sdpa_backward_flop(grad_shape, q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_shape, q_shape, k_shape, v_shape)


def matched_config(size: int) -> UNetConfig:
    """The fast preset's widths at ``size``, with self-attention wherever there is cross-attention (as diffusers)."""
    fast = UNetConfig.fast()
    return UNetConfig(image_size=size, self_attn_levels=fast.cross_attn_levels)


def diffusers_unet(cfg: UNetConfig):
    """UNet2DConditionModel with the same layout as LandmarkUNet(cfg)."""
    from diffusers import UNet2DConditionModel

    cross = [i in cfg.cross_attn_levels for i in range(len(cfg.widths))]
    return UNet2DConditionModel(
        sample_size=cfg.image_size, in_channels=cfg.in_channels + cfg.cond_channels, out_channels=cfg.out_channels,
        down_block_types=tuple("CrossAttnDownBlock2D" if c else "DownBlock2D" for c in cross),
        up_block_types=tuple("CrossAttnUpBlock2D" if c else "UpBlock2D" for c in reversed(cross)),
        mid_block_type="UNetMidBlock2DCrossAttn", block_out_channels=cfg.widths, layers_per_block=cfg.blocks_per_level,
        cross_attention_dim=cfg.token_dim, attention_head_dim=cfg.heads,  # diffusers' legacy name: the number of heads
        norm_num_groups=cfg.norm_groups, resnet_time_scale_shift="scale_shift")


def build(name: str, size: int, batch: int, device: torch.device):
    """-> (model, call(inputs) -> output, inputs) for one benchmark row."""
    torch.manual_seed(0)
    cfg = UNetConfig(image_size=size) if name == "minitalker-fast-preset" else matched_config(size)
    B, S = batch, size
    x = dict(x_t=torch.randn(B, 3, S, S), t=torch.randint(0, 1000, (B,)), cond=torch.randn(B, 6, S, S),
             landmarks=torch.rand(B, 68, 2) * 2 - 1, tokens=torch.randn(B, 68, cfg.token_dim))
    x = {k: v.to(device) for k, v in x.items()}
    if name.startswith("minitalker"):
        model = LandmarkUNet(cfg).to(device)
        return model, lambda i: model(i["x_t"], i["t"], i["cond"], i["landmarks"]), x
    model = diffusers_unet(cfg).to(device)
    if name.endswith("channels_last"):
        model = model.to(memory_format=torch.channels_last)
    fmt = torch.channels_last if name.endswith("channels_last") else torch.contiguous_format
    return model, lambda i: model(torch.cat([i["x_t"], i["cond"]], 1).contiguous(memory_format=fmt), i["t"],
                                  encoder_hidden_states=i["tokens"]).sample, x


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_gflops(device: torch.device, n: int = 2048, reps: int = 3) -> float:
    """Best-of-``reps`` fp32 n x n matmul rate: the practical peak we compare against."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    best = float("inf")
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def steps(name: str, size: int, batch: int, device: torch.device):
    """-> (model, train_step(), forward()) for one row: AdamW on the MSE to a fixed target; no-grad forward."""
    model, call, x = build(name, size, batch, device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)
    target = torch.randn_like(x["x_t"])

    def train_step():
        model.train()
        loss = (call(x) - target).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    @torch.no_grad()
    def forward():
        model.eval()
        call(x)

    return model, train_step, forward


def flops_and_memory(name: str, size: int, batch: int, device: torch.device) -> dict:
    """FLOPs per image and the peak memory of training steps; run in a fresh process (max RSS is per process)."""
    model, call, x = build(name, size, batch, device)
    one = {k: v[:1] for k, v in x.items()}
    with FlopCounterMode(display=False) as fc:
        call(one)
    fwd_flops = fc.get_total_flops()
    with FlopCounterMode(display=False) as fc:
        call(one).square().mean().backward()
    train_flops = fc.get_total_flops()
    del model, call, x
    model, train_step, forward = steps(name, size, batch, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = rss_mb()
    for _ in range(2):  # the second step runs with the optimizer state allocated
        train_step()
    sync(device)
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if device.type == "cuda" else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
    row = dict(model=name, size=size, batch=batch, params_M=sum(p.numel() for p in model.parameters()) / 1e6,
               fwd_GFLOP_per_img=fwd_flops / 1e9, train_GFLOP_per_img=train_flops / 1e9, train_peak_mem_MB=peak)
    if device.type == "cpu":
        row.update(one_thread_cpu_ms_per_img(train_step, forward, batch))
    return row


def one_thread_cpu_ms_per_img(train_step, forward, batch: int, reps: int = 2) -> dict:
    """CPU time (not wall time) of one thread per image, best of ``reps``: the cost of the work itself,
    barely moved by other processes on a shared machine (wall-clock rates with 2 threads swing +-30%)."""
    torch.set_num_threads(1)
    out = {}
    for key, fn in (("train_cpu1_ms_per_img", train_step), ("fwd_cpu1_ms_per_img", forward)):
        fn()
        best = float("inf")
        for _ in range(reps):
            t0 = time.process_time()
            fn()
            best = min(best, time.process_time() - t0)
        out[key] = best / batch * 1e3
    return out


def timings(names, size: int, batch: int, iters: int, device: torch.device) -> dict:
    """Best-of-``iters`` seconds per train step and per forward, the models taking turns (round robin), so
    that a busy spell on a shared machine hits all of them; with the best matmul rate of the same rounds."""
    runs = {n: steps(n, size, batch, device) for n in names}
    best = {n: [float("inf"), float("inf")] for n in names}
    peak = 0.0
    for r in range(iters + 1):  # round 0 warms up
        peak = max(peak, matmul_gflops(device))
        for n, (_, train_step, forward) in runs.items():
            for i, fn in enumerate((train_step, forward)):
                sync(device)
                t0 = time.perf_counter()
                fn()
                sync(device)
                if r:
                    best[n][i] = min(best[n][i], time.perf_counter() - t0)
    return dict(seconds=best, matmul_peak_GFLOP_s=peak)


def run_child(name, size, batch, device) -> dict:
    cmd = [sys.executable, __file__, "--child", name, "--sizes", str(size), "--batch", str(batch), "--device", device]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def measure(size: int, batch: int, iters: int, device: str) -> list[dict]:
    """All rows of one image size: FLOPs and memory per fresh process, then interleaved timings."""
    names = MODELS if size == UNetConfig.fast().image_size else MODELS[:3]
    rows = [run_child(n, size, batch, device) for n in names]
    t = timings(names, size, batch, iters, torch.device(device))
    for r in rows:
        t_train, t_fwd = t["seconds"][r["model"]]
        r.update(fwd_img_s=batch / t_fwd, train_img_s=batch / t_train,
                 fwd_GFLOP_s=r["fwd_GFLOP_per_img"] * batch / t_fwd, train_GFLOP_s=r["train_GFLOP_per_img"] * batch / t_train,
                 matmul_peak_GFLOP_s=t["matmul_peak_GFLOP_s"])
    return rows


def table(rows: list[dict]) -> str:
    cols = [("model", "model", "s"), ("size", "size", "d"), ("batch", "B", "d"), ("params_M", "params M", ".2f"),
            ("fwd_img_s", "fwd img/s", ".2f"), ("train_img_s", "train img/s", ".2f"),
            ("train_peak_mem_MB", "train peak MB", ".0f"), ("fwd_GFLOP_per_img", "GFLOP/img fwd", ".2f"),
            ("fwd_GFLOP_s", "fwd GFLOP/s", ".0f"), ("train_GFLOP_s", "train GFLOP/s", ".0f"),
            ("matmul_peak_GFLOP_s", "matmul GFLOP/s", ".0f")]
    if all("train_cpu1_ms_per_img" in r for r in rows):
        cols += [("train_cpu1_ms_per_img", "1-thread CPU ms/img train", ".0f"), ("fwd_cpu1_ms_per_img", "1-thread CPU ms/img fwd", ".0f")]
    lines = ["| " + " | ".join(h for _, h, _ in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(format(r[k], f) for k, _, f in cols) + " |" for r in rows]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--batch", type=int, default=None, help="default: 8 at 64 px, 4 at 128 px on CPU; 32 on CUDA")
    ap.add_argument("--iters", type=int, default=3, help="timed rounds after one warm-up round (best is kept)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cpu, then cuda when present")
    ap.add_argument("--child", choices=MODELS, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(flops_and_memory(a.child, a.sizes[0], a.batch, torch.device(a.device))))
        return
    devices = [a.device] if a.device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        rows = []
        for size in a.sizes:
            rows += measure(size, a.batch or (32 if device == "cuda" else 8 if size <= 64 else 4), a.iters, device)
            print(table(rows), flush=True)
        name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or platform.machine()
        meta = dict(device=device, device_name=name, torch=torch.__version__, threads=torch.get_num_threads(),
                    iters=a.iters, load_average_1min=os.getloadavg()[0],
                    note="matched = the fast preset's layout with self-attention wherever there is cross-attention "
                         "(as in diffusers' CrossAttn blocks); times are best-of-iters, models interleaved")
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"unet_vs_diffusers_{device}.json"
        path.write_text(json.dumps(dict(meta=meta, rows=rows), indent=1) + "\n")
        print(f"\n{device} ({name}, {meta['threads']} threads, torch {torch.__version__})\n{table(rows)}\n-> {path}")


if __name__ == "__main__":
    main()
