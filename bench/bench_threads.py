"""Intra-op threads for the default job: seconds per training batch (the conv net, batch 512, AdamW, bf16 where
`auto_precision` picks it) with torch.set_num_threads(1) and (2), interleaved in one process, median of rounds.

Run it on a quiet machine and again while other work runs (e.g. `python bench/bench_threads.py --load`, which
starts one busy process per core as the competing work): the ratio t(2 threads)/t(1 thread) is the figure."""
import multiprocessing as mp, os, statistics, sys, time
from functools import partial

import torch
import torch.nn.functional as F
from torch import optim

from miniai.activations import set_seed
from miniai.datasets import get_dls
from miniai.init import conv_net
from miniai.precision import auto_precision

def _spin(stop):
    x = 0
    while not stop.is_set(): x += 1

def bench_threads(rounds:int=5, n_batches:int=12, threads=(1, 2), load:bool=False)->dict:
    "Seconds per training batch for each thread count (median over interleaved rounds) and the ratios to 1 thread."
    set_seed(0)
    it = iter(get_dls(bs=512).train)
    batches = [next(it) for _ in range(n_batches)]
    model = conv_net()
    opt = optim.AdamW(model.parameters(), 1e-3, eps=1e-5)
    bf16 = auto_precision('cpu') == 'bf16'
    def epoch():
        for xb,yb in batches:
            with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16): loss = F.cross_entropy(model(xb), yb)
            loss.backward(); opt.step(); opt.zero_grad()
    stop,procs = mp.Event(),[]
    if load:  # the competing work: one busy process per core
        procs = [mp.Process(target=_spin, args=(stop,), daemon=True) for _ in range(os.cpu_count())]
        for p in procs: p.start()
    try:
        times = {n: [] for n in threads}
        for n in threads: torch.set_num_threads(n); epoch()  # warm-up
        for r in range(rounds):
            for n in threads:
                torch.set_num_threads(n)
                t = time.perf_counter(); epoch(); times[n].append((time.perf_counter() - t) / n_batches)
    finally:
        stop.set()
        for p in procs: p.join()
    med = {n: statistics.median(v) for n,v in times.items()}
    return dict(seconds_per_batch=med, ratio={n: med[n]/med[threads[0]] for n in threads}, load=load, bf16=bf16,
                rounds=rounds, cpus=os.cpu_count())

if __name__ == '__main__':
    r = bench_threads(load='--load' in sys.argv)
    print(('with a competing load: ' if r['load'] else '') + ', '.join(
        f"{n} thread(s) {s*1e3:.0f} ms/batch (x{r['ratio'][n]:.2f})" for n,s in r['seconds_per_batch'].items()))
