"""The shared trainer: schedule, exact resumption, atomic checkpoints, best/EMA, DDP = one process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import minitalker.io
from minitalker.io import load_checkpoint, load_meta, save_checkpoint
from minitalker.train.loop import TrainConfig, lr_at, sample_seeds
from tiny_training import batch_fn, make_trainer


def states(path):
    return load_file(str(Path(path).with_suffix(".safetensors")))


def log_lines(out):
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def test_lr_schedule_warms_up_then_decays_to_min():
    cfg = TrainConfig(steps=100, lr=1e-2, min_lr=1e-4, warmup_steps=10)
    lrs = [lr_at(s, cfg) for s in range(101)]
    assert lrs[0] == pytest.approx(1e-3) and lrs[9] == pytest.approx(1e-2) and lrs[10] == pytest.approx(1e-2)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[100] == pytest.approx(1e-4)


def test_sample_seeds_depend_on_seed_and_step_only():
    assert sample_seeds(0, 5, 8) == sample_seeds(0, 5, 8)
    assert sample_seeds(0, 5, 8)[:4] == sample_seeds(0, 5, 4)  # a prefix: batch slices are stable
    a, b, c = sample_seeds(0, 5, 8), sample_seeds(0, 6, 8), sample_seeds(1, 5, 8)
    assert a != b and a != c and b != c  # another step, another seed: all differ


def test_resume_after_crash_gives_identical_weights_and_log(tmp_path):
    make_trainer(tmp_path / "a", ema_decay=0.9).fit()
    calls = []

    def crashing_batch_fn(seeds):
        calls.append(1)
        if len(calls) == 9:  # during step 9; the last checkpoint is from step 5
            raise KeyboardInterrupt("simulated crash")
        return batch_fn(seeds)

    with pytest.raises(KeyboardInterrupt):
        make_trainer(tmp_path / "b", batch_fn=crashing_batch_fn, ema_decay=0.9).fit()
    assert load_checkpoint(tmp_path / "b" / "last")[1]["step"] == 5
    resumed = make_trainer(tmp_path / "b", seed=123, ema_decay=0.9)  # other init: the checkpoint must win
    resumed.fit(resume=True)
    a, b = states(tmp_path / "a" / "last"), states(tmp_path / "b" / "last")
    assert a.keys() == b.keys() and any(k.startswith("optim.") for k in a) and any(k.startswith("ema.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    la, lb = log_lines(tmp_path / "a"), log_lines(tmp_path / "b")
    assert [r["step"] for r in lb] == list(range(1, 13))  # the crashed run's steps 6-8 were dropped
    assert [r["loss"] for r in la] == [r["loss"] for r in lb]


def test_resume_refuses_another_config(tmp_path):
    make_trainer(tmp_path, steps=5).fit()
    with pytest.raises(ValueError, match=r"another train_config.*'lr'"):
        make_trainer(tmp_path, steps=5, lr=1e-3).fit(resume=True)


def test_checkpoints_are_atomic_and_torn_pairs_are_caught(tmp_path, monkeypatch):
    trainer = make_trainer(tmp_path, steps=5)
    trainer.fit()
    before = states(tmp_path / "last")

    def dying_save_file(tensors, filename):
        Path(filename).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(minitalker.io, "save_file", dying_save_file)
    trainer.train_step()
    with pytest.raises(OSError, match="disk full"):
        trainer.save(tmp_path / "last")
    monkeypatch.undo()
    after = states(tmp_path / "last")
    assert all(torch.equal(before[k], after[k]) for k in before)  # the old checkpoint is intact
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no leftovers
    # a pair whose tensors and JSON come from different saves (killed between the two renames)
    meta = json.loads((tmp_path / "last.json").read_text())
    minitalker.io.write_json(tmp_path / "last.json", meta | {"step": 4})
    with pytest.raises(RuntimeError, match="torn"):
        make_trainer(tmp_path, steps=5).fit(resume=True)


def test_checkpoint_names_keep_their_dots_and_damaged_files_are_named(tmp_path):
    w = {"w": torch.arange(4.0)}
    save_checkpoint(tmp_path / "run_v0.5", w, {"step": 5})
    save_checkpoint(tmp_path / "run_v0.6", w, {"step": 6})  # with_suffix would have overwritten run_v0.json
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run_v0.5.json", "run_v0.5.safetensors",
                                                           "run_v0.6.json", "run_v0.6.safetensors"]
    assert load_checkpoint(tmp_path / "run_v0.5")[1] == {"step": 5} and load_meta(tmp_path / "run_v0.6.json") == {"step": 6}
    st = tmp_path / "run_v0.5.safetensors"
    st.write_bytes(st.read_bytes()[:-3])  # a copy cut short
    with pytest.raises(ValueError, match=r"run_v0\.5\.safetensors is truncated or corrupt .* — .*--fresh"):
        load_checkpoint(tmp_path / "run_v0.5")
    js = tmp_path / "run_v0.6.json"
    js.write_text(js.read_text()[:5])
    with pytest.raises(ValueError, match=r"run_v0\.6\.json is truncated or corrupt"):
        load_meta(tmp_path / "run_v0.6")


def test_best_checkpoint_holds_the_lowest_validation_metric(tmp_path):
    make_trainer(tmp_path).fit()
    evals = {r["step"]: r["val_loss"] for r in log_lines(tmp_path) if "val_loss" in r}
    assert list(evals) == [4, 8, 12]
    tensors, meta = load_checkpoint(tmp_path / "best")
    assert meta["best"]["value"] == min(evals.values()) and meta["step"] == min(evals, key=evals.get)
    assert not any(k.startswith("optim.") for k in tensors)  # weights only: small


def test_ema_follows_its_recursion(tmp_path):
    trainer = make_trainer(tmp_path, ema_decay=0.6)
    ema = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    for step in range(4):
        trainer.train_step()
        d = min(0.6, (1 + step) / (10 + step))  # decay warm-up: 0.1, 0.18, 0.25, then 0.6
        ema = {k: d * ema[k] + (1 - d) * v for k, v in trainer.model.state_dict().items()}
    for k, v in trainer.ema.state_dict().items():
        torch.testing.assert_close(v, ema[k], rtol=0, atol=1e-6)
    assert trainer.eval_model is trainer.ema
    assert not torch.equal(trainer.ema.state_dict()["0.weight"], trainer.model.state_dict()["0.weight"])


def test_ddp_with_two_gloo_processes_matches_one_process(tmp_path):
    """torchrun, 2 CPU ranks × 4 samples == 1 process × 8 samples: same weights, EMA and AdamW state."""
    make_trainer(tmp_path / "single", ema_decay=0.9).fit()
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env |= {"OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), env.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(Path(__file__).parent / "tiny_training.py"), str(tmp_path / "ddp")]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    single, ddp = states(tmp_path / "single" / "last"), states(tmp_path / "ddp" / "last")
    assert single.keys() == ddp.keys()
    for k in single:
        torch.testing.assert_close(ddp[k], single[k], rtol=0, atol=1e-6, msg=k)
    assert load_checkpoint(tmp_path / "ddp" / "last")[1]["world_size"] == 2
    r0, r1 = (json.loads((tmp_path / "ddp" / f"seeds-rank{r}.json").read_text()) for r in (0, 1))
    assert [a + b for a, b in zip(r0, r1)] == [sample_seeds(0, s, 8) for s in range(12)]  # halves of each batch


def test_batches_built_ahead_by_worker_processes_are_the_loops_own(tmp_path):
    """workers > 0: forked processes build the batches (batch_fn never runs in this process), training
    gives the same weights and log as building them in the loop, and resuming may change the workers."""
    make_trainer(tmp_path / "loop", ema_decay=0.9).fit()
    parent = os.getpid()

    def batch_fn_elsewhere(seeds):
        assert os.getpid() != parent, "with workers, batches are built in the worker processes"
        return batch_fn(seeds)

    make_trainer(tmp_path / "workers", batch_fn=batch_fn_elsewhere, ema_decay=0.9, workers=2).fit()
    a, b = states(tmp_path / "loop" / "last"), states(tmp_path / "workers" / "last")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [r["loss"] for r in log_lines(tmp_path / "loop")] == [r["loss"] for r in log_lines(tmp_path / "workers")]
    with pytest.raises(ValueError, match="another train_config"):
        make_trainer(tmp_path / "loop", steps=13, ema_decay=0.9).fit(resume=True)
    make_trainer(tmp_path / "loop", ema_decay=0.9, workers=2).fit(resume=True)  # workers alone may change
