"""Issue 20: `keep_freed_memory()` (miniai.threads, 04_threads), glibc's malloc told to keep the memory a training step
frees, against Python's own malloc settings. The setting is for the whole process and cannot be taken back, so every
measurement is a fresh process, the two kinds alternated.

- `step_ms`: ms per training step (fp32, channels last, miniai's AdamW, batches of 256 from `get_dls`, as a fit draws them) of the
  default job's `fast_net` and of `--preset best`'s ResNet, with the process's page faults per step and its peak RSS.
- `fit_wall`: the whole `miniai fit` command with its defaults, against the same command with the call replaced by
  one that does nothing: wall seconds, and the fit's own "in all" seconds.

Run: `python bench/bench_malloc.py [--rounds 3] [--threads 2]`; `make bench` runs both."""
import argparse, json, re, statistics, subprocess, sys, tempfile, time
from pathlib import Path

_STEP = r"""
import json, resource, sys, time
import torch, torch.nn.functional as F
from miniai.threads import keep_freed_memory
model, keep, threads, n = sys.argv[1], sys.argv[2] == 'keep', int(sys.argv[3]), int(sys.argv[4])
if keep: assert keep_freed_memory()
from miniai.datasets import get_dls
from miniai.fastnet import fast_net
from miniai.resnet import resnet
from miniai.optim import AdamW
torch.set_num_threads(threads); torch.manual_seed(0)
dls = get_dls(bs=256)
m = (fast_net() if model == 'fast_net' else resnet()).to(memory_format=torch.channels_last)
opt = AdamW(m.parameters(), lr=1e-2, eps=1e-5)
def steps(k):  # as a fit runs them: batches from the loader, made channels last (ChannelsLastCB) one at a time
    for i,(xb,yb) in enumerate(dls.train):
        if i == k: break
        F.cross_entropy(m(xb.contiguous(memory_format=torch.channels_last)), yb).backward(); opt.step(); opt.zero_grad()
steps(5)  # warm-up: the first steps allocate the optimizer's state
f0, t = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
steps(n)
ms = (time.perf_counter() - t) / n * 1e3
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps(dict(ms=ms, faults_per_step=(ru.ru_minflt - f0) / n, peak_rss_mb=ru.ru_maxrss / 1024)))
"""

def step_ms(model:str, rounds:int=3, threads:int=2, n:int=None)->dict:
    "Medians over `rounds` fresh processes of each kind, alternated: ms/step, page faults/step, peak RSS (MB); the ratio keep/plain."
    n = n or (200 if model == 'fast_net' else 60)
    res = dict(plain=[], keep=[])
    for _ in range(rounds):
        for k in res:
            r = subprocess.run([sys.executable, '-c', _STEP, model, k, str(threads), str(n)], capture_output=True, text=True, check=True)
            res[k].append(json.loads(r.stdout.strip().splitlines()[-1]))
    med = {k: {q: statistics.median(d[q] for d in v) for q in v[0]} for k,v in res.items()}
    return dict(model=model, threads=threads, steps=n, rounds=rounds, **med, ratio_keep_plain=med['keep']['ms'] / med['plain']['ms'])

_FIT = ("import sys, miniai.cli as c\n"
        "if sys.argv[1] == 'plain': c.keep_freed_memory = lambda: False\n"
        "c.console_main(['fit', '--out', sys.argv[2]])\n")

def fit_wall(rounds:int=3)->dict:
    "`miniai fit` with its defaults, whole processes alternated: medians of wall and of the fit's own 'in all' seconds, and the accuracy."
    res = dict(plain=[], keep=[])
    with tempfile.TemporaryDirectory() as d:
        for i in range(rounds):
            for k in res:
                t = time.perf_counter()
                r = subprocess.run([sys.executable, '-c', _FIT, k, f'{d}/{k}{i}'], capture_output=True, text=True, check=True)
                wall = time.perf_counter() - t
                m = re.search(r'valid accuracy ([0-9.]+); ([0-9.]+) s in all', r.stdout)
                res[k].append(dict(wall=wall, in_all=float(m[2]), accuracy=float(m[1])))
    med = {k: {q: statistics.median(d[q] for d in v) for q in v[0]} for k,v in res.items()}
    return dict(rounds=rounds, **med, ratio_wall=med['keep']['wall'] / med['plain']['wall'])

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--rounds', type=int, default=3); p.add_argument('--threads', type=int, default=2)
    a = p.parse_args()
    for model in ('fast_net', 'resnet'): print(json.dumps(step_ms(model, a.rounds, a.threads)))
    print(json.dumps(fit_wall(a.rounds)))
