"""Mixed precision on this CPU: epoch time of `TrainLearner` in fp32 against the same fit under
`MixedPrecisionCB('bf16')`, interleaved epoch by epoch in one run; and the accuracy `miniai fit` reaches
with `--precision bf16` against fp32 on the same seeds.

The time ratio (bf16 seconds per epoch / fp32 seconds per epoch) is the figure that counts; absolute times on
a shared machine vary by ±30%. The CLI's default precision follows from these two figures (see 41_cli)."""
import csv, statistics, subprocess, sys, tempfile, time
from copy import deepcopy
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import optim
from torcheval.metrics import MulticlassAccuracy

from miniai.activations import set_seed
from miniai.datasets import get_dls
from miniai.init import conv_net
from miniai.learner import TrainLearner, MetricsCB
from miniai.precision import MixedPrecisionCB

def bench_epoch_time(rounds:int=4, bs:int=512)->dict:
    "Seconds per epoch (train + valid pass) in fp32 and bf16, median of `rounds` interleaved epochs, and their ratio."
    set_seed(0)
    dls = get_dls(bs=bs)
    model0 = conv_net()
    learns = {}
    for name,extra in (('fp32', []), ('bf16', [MixedPrecisionCB('bf16')])):
        ms = MetricsCB(accuracy=MulticlassAccuracy(), quiet=True)
        learns[name] = TrainLearner(deepcopy(model0), dls, F.cross_entropy, lr=1e-3,
                                    opt_func=partial(optim.AdamW, eps=1e-5), cbs=[ms] + extra)
    times = {k: [] for k in learns}
    for r in range(rounds + 1):  # round 0 warms up (oneDNN picks and caches its kernels on first use)
        for name,learn in learns.items():
            t = time.perf_counter(); learn.fit(1); dt = time.perf_counter() - t
            if r: times[name].append(dt)
    med = {k: statistics.median(v) for k,v in times.items()}
    ratios = [b/a for a,b in zip(times['fp32'], times['bf16'])]
    return dict(seconds_per_epoch=med, ratio_bf16_fp32=statistics.median(ratios), ratios=ratios, rounds=rounds,
                threads=torch.get_num_threads(), bs=bs)

def bench_accuracy(seeds=(42, 1, 2), precisions=('fp32', 'bf16'))->dict:
    "Final valid accuracy and wall time of `miniai fit` (defaults) for each precision and seed, run one after another."
    exe = Path(sys.executable).with_name('miniai')
    res = {p: {} for p in precisions}
    for seed in seeds:
        for p in precisions:
            out = Path(tempfile.mkdtemp())/'run'
            t = time.perf_counter()
            subprocess.run([str(exe), 'fit', '--out', str(out), '--quiet', '--seed', str(seed), '--precision', p], check=True)
            rows = list(csv.DictReader(open(out/'metrics.csv')))
            res[p][seed] = dict(accuracy=float(rows[-1]['valid_accuracy']), wall=time.perf_counter() - t)
    return res

if __name__ == '__main__':
    r = bench_epoch_time()
    print(f"threads {r['threads']}, bs {r['bs']}: " + ', '.join(f"{k} {v:.2f} s/epoch" for k,v in r['seconds_per_epoch'].items())
          + f"; bf16/fp32 {r['ratio_bf16_fp32']:.3f} (rounds: {', '.join(f'{x:.2f}' for x in r['ratios'])})")
    acc = bench_accuracy()
    for p,d in acc.items():
        print(p, ', '.join(f"seed {s}: {v['accuracy']:.4f} ({v['wall']:.1f} s)" for s,v in d.items()))
