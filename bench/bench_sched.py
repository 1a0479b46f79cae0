"""Cost of one scheduler step: miniai's OneCycle against torch's OneCycleLR (momentum cycling on), AdamW.

Both run in the same process, interleaved repeat by repeat (so a slow patch of the machine hits both), at
1 and at 10 param groups; the medians and their ratio are reported. Target: ours <= 0.40 x torch.
Run: `python bench/bench_sched.py` (prints) or `bench_sched()` (returns the numbers)."""
import statistics, sys, timeit, warnings
from pathlib import Path

import torch
from torch import nn, optim
from torch.optim.lr_scheduler import OneCycleLR

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from miniai.sched import OneCycle

TARGET = 0.40

def _opt(n_groups:int):
    return optim.AdamW([{'params': [nn.Parameter(torch.zeros(1))], 'lr': 1e-2} for _ in range(n_groups)])

def bench_sched(groups=(1, 10), # numbers of param groups to time
                repeats:int=15, # interleaved repeats (medians are reported)
                number:int=20000 # steps per repeat
               )->dict:
    "µs per `step()` for ours and torch's, per number of groups, with the ratio ours/torch."
    res = {}
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # torch: "lr_scheduler.step() before optimizer.step()" (no training here)
        for ng in groups:
            T = 10 * repeats * number + 10  # never past the end: torch would raise
            theirs = OneCycleLR(_opt(ng), max_lr=6e-2, total_steps=T, cycle_momentum=True)
            ours = OneCycle(_opt(ng), T_max=T, max_lr=6e-2)
            t_us,o_us = [],[]
            for _ in range(repeats):
                t_us.append(timeit.timeit(theirs.step, number=number) / number * 1e6)
                o_us.append(timeit.timeit(ours.step, number=number) / number * 1e6)
            t,o = statistics.median(t_us),statistics.median(o_us)
            res[ng] = dict(torch_us=t, ours_us=o, ratio=o / t, ok=o / t <= TARGET)
    return res

if __name__ == '__main__':
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads; AdamW, momentum cycling on')
    for ng,r in bench_sched().items():
        print(f"{ng:3} group(s): torch OneCycleLR {r['torch_us']:6.2f} µs/step, miniai OneCycle {r['ours_us']:5.2f} µs/step, "
              f"ratio {r['ratio']:.2f} (target <= {TARGET:.2f}: {'ok' if r['ok'] else 'MISSED'})")
