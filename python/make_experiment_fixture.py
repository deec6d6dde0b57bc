#!/usr/bin/env python3
"""Writes an Atheria experiment as Atheria's trainer leaves it, and what a run of it must give.

    python python/make_experiment_fixture.py [--out tests/fixtures/atheria_output]

Writes, with fixed seeds and timestamps:

- ``experiments/<name>/config.json``: the keys, value types, order and
  formatting (``json.dump(indent=4)``) of Atheria's ``src/trainer.py`` +
  ``src/utils.py:save_experiment_config``, after the V4 training loop's final
  update (``total_training_time``, ``last_training_time``, ``TRAINER_VERSION``).
- ``training_checkpoints/<name>/``: the files ``QC_Trainer_v4.save_checkpoint``
  leaves after a run of ``TOTAL_EPISODES`` = 120 saving every 50 episodes
  (episodes 49 and 99, then the final save at 119): ``best_model.pth``
  (episode 49 was the best so far), ``checkpoint_ep99.pth``,
  ``checkpoint_ep119.pth``, ``last_checkpoint.pth`` (a copy of the last file
  saved) and the ``snapshot_ep<N>.pt`` / ``best_snapshot.pt`` states. Every
  ``.pth`` holds Atheria's keys: episode, model_state_dict (keys prefixed
  ``_orig_mod.``, as a torch.compile'd operator writes them),
  optimizer_state_dict (AdamW after real steps), scheduler_state_dict
  (ReduceLROnPlateau), loss, metrics, combined_metric.
  The weights differ between checkpoints, so a reader that picks the wrong
  file (by name order, by best_model, by modification time) gets another run.
- ``expected/<name>/``: initial.safetensors and expected.safetensors (state
  files, ``STEPS`` steps of the reference engine apart, with the config's
  GAMMA_DECAY) from the checkpoint Atheria's ``get_latest_checkpoint`` picks,
  and case.json saying which and why.

The .pth files hold a random serialization id (torch.save), so a rerun
changes their bytes but not their contents; the other files are byte-stable.
See python/ATHERIA_EXPERIMENTS.md for the layout and the rules.
"""

from __future__ import annotations

import argparse
import collections
import copy
import json
import shutil
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from atheria_ref.engine import NORM_EPS, ReferenceEngine, initial_state  # noqa: E402
from atheria_ref.models import build_model, init_weights  # noqa: E402
from atheria_ref.state_io import State, write_state  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NAME = "convlstm_d2_h2_g16"
#: Atheria's MODEL_ARCHITECTURE -> our architecture.
ARCH, ATHERIA_ARCH = "unet_convlstm", "UNET_CONVLSTM"
D_STATE = 2
#: 2, not 4: with hidden 4 each .pth (weights + AdamW's two moments) is 0.55 MB
#: and the four of them would not fit the ~1 MB the fixture may take.
HIDDEN = 2
GRID = 16
#: Not Atheria's default 0.01, so a reader that ignores config.json's GAMMA_DECAY shows.
GAMMA = 0.02
LR = 1e-4
TOTAL_EPISODES = 120
SAVE_EVERY = 50  # Atheria's SAVE_EVERY_EPISODES default; config.json does not hold it.
STEPS = 10
SEED = 31

#: (episode, file name, is_best) of every save of the run, in order (see
#: src/pipelines/pipeline_train.py `_run_v4_training_loop`): periodic saves at
#: (episode + 1) % 50 == 0, then the final save at TOTAL_EPISODES - 1, which is
#: never "best" there (its metric is already in the running best, and the test is strict <).
SAVES = [
    (49, "best_model.pth", True),
    (99, "checkpoint_ep99.pth", False),
    (119, "checkpoint_ep119.pth", False),
]


def atheria_pick(names) -> str:
    """Atheria's get_latest_checkpoint (src/utils.py:168-210) on a list of file names."""
    candidates = [f for f in names if f.endswith(".pth")]

    def episode(filename: str) -> int:
        try:
            return int(filename.split("_")[-1].split(".")[0].replace("ep", ""))
        except (ValueError, IndexError):
            return 0

    # max() keeps the first of equal keys: in Atheria, os.listdir order.
    return max(candidates, key=episode)


def config_json() -> dict:
    """config.json as Atheria's trainer writes it, then updates it after training."""
    return {
        "EXPERIMENT_NAME": NAME,
        "MODEL_ARCHITECTURE": ATHERIA_ARCH,
        "LR_RATE_M": LR,
        "GRID_SIZE_TRAINING": GRID,
        "QCA_STEPS_TRAINING": 16,
        "TOTAL_EPISODES": TOTAL_EPISODES,
        "MODEL_PARAMS": {"d_state": D_STATE, "hidden_channels": HIDDEN},
        "DEVICE": "cpu",
        "GAMMA_DECAY": GAMMA,
        "NOISE_LEVEL": 0.05,
        "ENGINE_TYPE": "PYTHON",
        "BACKEND_TYPE": "LOCAL",
        "CONTINUE_TRAINING": False,
        "created_at": "2026-01-15T10:00:00.000000",
        "updated_at": "2026-01-15T10:42:17.123456",
        "total_training_time": 2537.123456789,
        "last_training_time": "2026-01-15T10:42:17.123456",
        "TRAINER_VERSION": "v4",
    }


def train_between_saves(model, optimizer, gen: torch.Generator, episode: int) -> tuple[float, dict]:
    """Stands in for the episodes before a save: moves the weights as many
    episodes of training would (a seeded drift, so checkpoints differ clearly),
    then takes two real AdamW steps on a rollout loss, so the optimizer state
    is a real one. Returns (loss, metrics) of the last step."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.15 * (p.abs().mean() + 0.05))
    loss_value, metrics = 0.0, {}
    for _ in range(2):
        optimizer.zero_grad()
        psi = initial_state("random", GRID, GRID, D_STATE, seed=episode)
        h = c = torch.zeros(1, 4 * HIDDEN, GRID // 4, GRID // 4)
        for _ in range(3):
            x = torch.cat([psi.real, psi.imag], -1).permute(0, 3, 1, 2)
            delta, h, c = model(x, h, c)
            delta = delta.permute(0, 2, 3, 1)
            psi = psi + torch.complex(delta[..., :D_STATE], delta[..., D_STATE:]) - GAMMA * psi
            psi = psi / (torch.sqrt((psi.abs() ** 2).sum(-1, keepdim=True)) + NORM_EPS)
        density = (psi.abs() ** 2).sum(-1)
        survival = (density.mean() - 1.0) ** 2
        symmetry = ((density - density.flip(-1)) ** 2).mean()
        complexity = -torch.log(density.var() + 1e-6)
        loss = 10.0 * survival + 5.0 * symmetry + 0.1 * complexity
        loss.backward()
        optimizer.step()
        loss_value = loss.item()
        metrics = {"survival": survival.item(), "symmetry": symmetry.item(), "complexity": complexity.item()}
    return loss_value, metrics


def write_plain_state_dict(out: Path) -> Path:
    """The picked checkpoint's weights saved the other way Atheria's loader accepts: the file *is* the
    state dict (``torch.save(model.state_dict())``, no ``model_state_dict`` key, no prefix)."""
    ckpt = torch.load(out / "training_checkpoints" / NAME / "checkpoint_ep119.pth", map_location="cpu",
                      weights_only=True)
    plain = collections.OrderedDict((k.replace("_orig_mod.", "", 1), v) for k, v in ckpt["model_state_dict"].items())
    path = out / "plain_state_dict" / "model_only.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(plain, path)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "atheria_output")
    p.add_argument("--plain-only", action="store_true",
                   help="only (re)write plain_state_dict/model_only.pth from the existing checkpoints")
    args = p.parse_args(argv)
    if args.plain_only:
        print(f"[experiment] wrote {write_plain_state_dict(args.out)}", file=sys.stderr)
        return 0
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    out = args.out
    exp_dir = out / "experiments" / NAME
    ckpt_dir = out / "training_checkpoints" / NAME
    expected_dir = out / "expected" / NAME
    for d in (exp_dir, ckpt_dir, expected_dir):
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)

    (exp_dir / "config.json").write_text(json.dumps(config_json(), indent=4))

    model = init_weights(build_model(ARCH, D_STATE, HIDDEN), ARCH, SEED).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=1e-5)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, "min", patience=100, factor=0.5)
    gen = torch.Generator().manual_seed(SEED + 1)
    weights = {}
    last = None
    for episode, filename, _is_best in SAVES:
        loss, metrics = train_between_saves(model, optimizer, gen, episode)
        scheduler.step(loss)
        combined = 10.0 * metrics["survival"] + 5.0 * metrics["symmetry"]
        state_dict = {"_orig_mod." + k: v.detach().clone() for k, v in model.state_dict().items()}
        checkpoint = {
            "episode": episode,
            "model_state_dict": state_dict,
            "optimizer_state_dict": copy.deepcopy(optimizer.state_dict()),
            "scheduler_state_dict": scheduler.state_dict(),
            "loss": loss,
            "metrics": metrics,
            "combined_metric": combined,
        }
        torch.save(checkpoint, ckpt_dir / filename)
        with torch.no_grad():
            psi = initial_state("random", GRID, GRID, D_STATE, seed=episode)
        torch.save(psi, ckpt_dir / f"snapshot_ep{episode}.pt")
        if _is_best:
            shutil.copyfile(ckpt_dir / f"snapshot_ep{episode}.pt", ckpt_dir / "best_snapshot.pt")
        shutil.copyfile(ckpt_dir / filename, ckpt_dir / "last_checkpoint.pth")
        weights[filename] = {k: v.clone() for k, v in model.state_dict().items()}
        last = filename

    files = sorted(f.name for f in ckpt_dir.iterdir())
    picked = atheria_pick(files)
    assert picked == "checkpoint_ep119.pth", picked
    assert sorted(f for f in files if f.endswith(".pth"))[-1] != picked  # name order would pick another

    # The run: the picked checkpoint's weights, the inference defaults.
    law = build_model(ARCH, D_STATE, HIDDEN)
    law.load_state_dict(weights[picked])
    psi0 = initial_state("complex_noise", GRID, GRID, D_STATE, seed=SEED + 2000)
    write_state(expected_dir / "initial.safetensors", State(psi0[0].numpy()))
    engine = ReferenceEngine(law, psi0, gamma=GAMMA, threads=1)
    engine.run(STEPS)
    memory = {k: v.numpy() for k, v in engine.memory_dict().items()}
    write_state(expected_dir / "expected.safetensors", State(engine.psi[0].numpy(), engine.step_count, memory=memory))

    # How far the other checkpoints' runs land: what a wrong pick would be off by.
    others = {}
    for filename, sd in weights.items():
        if filename == picked:
            continue
        other = build_model(ARCH, D_STATE, HIDDEN)
        other.load_state_dict(sd)
        e = ReferenceEngine(other, psi0, gamma=GAMMA, threads=1)
        e.run(STEPS)
        others[filename] = round(float((e.psi - engine.psi).abs().max()), 4)
    wrong_gamma = ReferenceEngine(law, psi0, gamma=0.01, threads=1)
    wrong_gamma.run(STEPS)

    case = {
        "experiment": NAME,
        "config": f"experiments/{NAME}/config.json",
        "checkpoint": f"training_checkpoints/{NAME}/{picked}",
        "why": (
            "Atheria's get_latest_checkpoint (src/utils.py:168-210) takes every *.pth in "
            f"training_checkpoints/{NAME}/ and keeps the largest int(name.split('_')[-1].split('.')[0]"
            ".replace('ep', '')), 0 where that fails: best_model.pth and last_checkpoint.pth count 0, "
            "checkpoint_ep99.pth 99, checkpoint_ep119.pth 119 (numeric, not name order, where ep99 sorts last)"
        ),
        "episode": 119,
        "architecture": ARCH,
        "d_state": D_STATE,
        "hidden_channels": HIDDEN,
        "height": GRID,
        "width": GRID,
        "steps": STEPS,
        "gamma": GAMMA,
        "gamma_from": "config.json GAMMA_DECAY (Atheria's CartesianEngine reads cfg.GAMMA_DECAY; 0 if absent)",
        "initial": "initial.safetensors (complex_noise, our seed: Atheria's own draw cannot be reproduced)",
        "memory": "starts from zeros; expected.safetensors holds h_state and c_state after the steps",
        "max_abs_diff_if_wrong_checkpoint": others,
        "max_abs_diff_if_gamma_0.01": round(float((wrong_gamma.psi - engine.psi).abs().max()), 4),
    }
    (expected_dir / "case.json").write_text(json.dumps(case, indent=2) + "\n")
    write_plain_state_dict(out)
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"[experiment] {out}: {', '.join(files)}; picked {picked} (last saved {last}); "
          f"wrong checkpoint off by {others}, wrong gamma by {case['max_abs_diff_if_gamma_0.01']}; "
          f"{total / 1e6:.2f} MB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
