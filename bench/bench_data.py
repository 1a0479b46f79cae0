"""Images/s of miniai's data paths: `get_dls(bs=1024)` (uint8 tensors in memory, normalised per batch) against
the course's `with_transform` path (`load_fashion_mnist()` + a PIL->tensor transform per image + `DataLoaders.from_dd`).

Both make the same normalised (1024, 1, 28, 28) float batches. They run in one process, interleaved round by round
(so a slow patch of the machine hits both); the first batch of each loader is not timed. Medians of the rounds
are reported, with the ratio fast/slow. Run: `python bench/bench_data.py` (prints) or `bench_data()` (returns)."""
import os, statistics, sys, time
from pathlib import Path

os.environ.setdefault('HF_HUB_OFFLINE', '1')
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from miniai.datasets import FASHION_MEAN, FASHION_STD, DataLoaders, get_dls, inplace, load_fashion_mnist

@inplace
def transformi(b):
    "PIL images -> normalised float tensors (1, 28, 28), one image at a time (as in the course)."
    b['image'] = [(torch.from_numpy(np.array(o, dtype=np.float32))[None]/255 - FASHION_MEAN)/FASHION_STD
                  for o in b['image']]

def _forever(dl):
    "Batches of `dl`, epoch after epoch."
    while True: yield from dl

def _rate(it, n_batches:int)->float:
    "Images/s drawing `n_batches` batches from iterator `it`."
    n, t0 = 0, time.perf_counter()
    for _ in range(n_batches): n += len(next(it)[0])
    return n / (time.perf_counter() - t0)

def bench_data(n_batches:int=300, # batches of the tensor path, over all rounds
               n_hf_batches:int=15, # batches of the with_transform path, over all rounds
               rounds:int=3, # interleaved rounds (medians are reported)
               bs:int=1024, # batch size of both paths
              )->dict:
    "Images/s of `get_dls(bs)`'s train loader and of the `with_transform` path, and their ratio."
    t0 = time.perf_counter(); get_dls(bs=bs); t_tensors = time.perf_counter() - t0
    t0 = time.perf_counter(); dd = load_fashion_mnist(); t_dd = time.perf_counter() - t0
    fast = _forever(get_dls(bs=bs).train)
    slow = _forever(DataLoaders.from_dd(dd.with_transform(transformi), bs, shuffle=True).train)
    next(fast); next(slow)  # untimed warm-up
    f, s = [], []
    for _ in range(rounds):
        f.append(_rate(fast, max(n_batches // rounds, 1)))
        s.append(_rate(slow, max(n_hf_batches // rounds, 1)))
    f, s = statistics.median(f), statistics.median(s)
    return dict(bs=bs, memorydl_img_s=round(f), with_transform_img_s=round(s), ratio=round(f / s, 1),
                batches=dict(memorydl=n_batches, with_transform=n_hf_batches, rounds=rounds),
                load_s=dict(get_dls=round(t_tensors, 3), load_fashion_mnist=round(t_dd, 3)),
                target='memorydl >= 1,000,000 img/s', ok=f >= 1e6)

if __name__ == '__main__':
    r = bench_data()
    print(f"bs={r['bs']}  (load: get_dls {r['load_s']['get_dls']} s, load_fashion_mnist {r['load_s']['load_fashion_mnist']} s)")
    print(f"  get_dls (MemoryDL):       {r['memorydl_img_s']:>12,} images/s")
    print(f"  with_transform + from_dd: {r['with_transform_img_s']:>12,} images/s")
    print(f"  ratio: {r['ratio']}x   ({r['target']}: {'ok' if r['ok'] else 'MISSED'})")
