"""Cost of one scheduler step: miniai's OneCycle against torch's OneCycleLR (momentum cycling on), AdamW.

Both run in the same process, interleaved repeat by repeat (so a slow patch of the machine hits both), at
1 and at 10 param groups; the medians and their ratio are reported. Target: ours <= 0.40 x torch.
`--ref DIR` also times the OneCycle of another checkout (e.g. `git worktree add /tmp/before HEAD~1`), interleaved
with the others in the same process: a change's before and after in one run.
Run: `python bench/bench_sched.py [--ref DIR]` (prints) or `bench_sched()` (returns the numbers)."""
import argparse, importlib, statistics, sys, timeit, warnings
from pathlib import Path

import torch
from torch import nn, optim
from torch.optim.lr_scheduler import OneCycleLR

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.40

def _one_cycle_from(root:Path):
    "The `OneCycle` class of the miniai package under `root`, imported apart from this checkout's (then put back)."
    mine = {k: sys.modules.pop(k) for k in [k for k in sys.modules if k == 'miniai' or k.startswith('miniai.')]}
    sys.path.insert(0, str(root))
    try:
        cls = importlib.import_module('miniai.sched').OneCycle
        if not Path(sys.modules['miniai'].__file__).resolve().is_relative_to(Path(root).resolve()):
            raise ValueError(f"--ref {root}: no miniai package there")
    finally:
        sys.path.remove(str(root))
        for k in [k for k in sys.modules if k == 'miniai' or k.startswith('miniai.')]: del sys.modules[k]
        sys.modules.update(mine)
    return cls

sys.path.insert(0, str(ROOT))
from miniai.sched import OneCycle

def _opt(n_groups:int):
    return optim.AdamW([{'params': [nn.Parameter(torch.zeros(1))], 'lr': 1e-2} for _ in range(n_groups)])

def bench_sched(groups=(1, 10), # numbers of param groups to time
                repeats:int=15, # interleaved repeats (medians are reported)
                number:int=20000, # steps per repeat
                ref=None # another checkout whose OneCycle is timed too (None: not)
               )->dict:
    "µs per `step()` for ours and torch's (and the reference's), per number of groups, with the ratio ours/torch."
    Ref = None if ref is None else _one_cycle_from(Path(ref))
    res = {}
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # torch: "lr_scheduler.step() before optimizer.step()" (no training here)
        for ng in groups:
            T = 10 * repeats * number + 10  # never past the end: torch would raise
            scheds = {'torch_us': OneCycleLR(_opt(ng), max_lr=6e-2, total_steps=T, cycle_momentum=True),
                      'ours_us': OneCycle(_opt(ng), T_max=T, max_lr=6e-2)}
            if Ref is not None: scheds['ref_us'] = Ref(_opt(ng), T_max=T, max_lr=6e-2)
            us = {k: [] for k in scheds}
            for _ in range(repeats):
                for k,s in scheds.items(): us[k].append(timeit.timeit(s.step, number=number) / number * 1e6)
            r = {k: statistics.median(v) for k,v in us.items()}
            r.update(ratio=r['ours_us'] / r['torch_us'], ok=r['ours_us'] / r['torch_us'] <= TARGET)
            if Ref is not None: r['vs_ref'] = r['ours_us'] / r['ref_us']
            res[ng] = r
    return res

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--ref', help="another checkout of miniai whose OneCycle is timed in the same run")
    args = ap.parse_args()
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads; AdamW, momentum cycling on')
    for ng,r in bench_sched(ref=args.ref).items():
        print(f"{ng:3} group(s): torch OneCycleLR {r['torch_us']:6.2f} µs/step, miniai OneCycle {r['ours_us']:5.2f} µs/step, "
              f"ratio {r['ratio']:.2f} (target <= {TARGET:.2f}: {'ok' if r['ok'] else 'MISSED'})"
              + (f"; reference {r['ref_us']:5.2f} µs/step, ours/reference {r['vs_ref']:.2f}" if 'ref_us' in r else ''))
