"""Which lr-finder suggestion trains best when followed with one-cycle training? (issue 9, item 2)

For each problem and seed: a fresh model, `learn.lr_find()` (defaults), then, from the same initial weights, a short
one-cycle fit (AdamW, `BatchSchedCB(OneCycle)`, as `miniai fit` trains) at each method's suggestion (fastai's
valley/slide/minimum/steep, and the old miniai rule "middle of the longest falling stretch"), and at the CLI's
hand-tuned 6e-2 for reference. Prints a markdown table of the suggested lrs and the final validation accuracies.

    .venv/bin/python bench/lr_find_suggestions.py [--quick]

One thread, so the numbers do not depend on what else runs (about 10 minutes on a 2-core x86_64 CPU)."""
import math, sys, time
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn, optim
from torcheval.metrics import MulticlassAccuracy

from miniai.activations import set_seed
from miniai.datasets import get_dls
from miniai.init import GeneralRelu, get_model, init_weights
from miniai.learner import TrainLearner, MetricsCB
from miniai.lrfind import smooth, suggest_lr, _SUGGESTERS
from miniai.sched import BatchSchedCB, OneCycle

def old_rule(lrs, losses, beta=0.9)->float:
    "miniai's suggestion before issue 9: halfway (log space) along the longest stretch where the smoothed loss falls."
    sm = smooth(losses, beta)
    best,start = (0, 0),0
    for i in range(1, len(sm)):
        if sm[i] >= sm[i-1]: start = i
        elif i - start > best[1] - best[0]: best = (start, i)
    return math.exp((math.log(lrs[best[0]]) + math.log(lrs[best[1]]))/2)

def fashion(n_train, width=1):
    "The CLI's conv net (GeneralRelu, BatchNorm, Kaiming) on the first `n_train` Fashion-MNIST images; `width` scales the channels."
    dls = get_dls(bs=512, n_train=n_train, n_valid=5000)
    nfs = tuple(int(c*width) for c in (8, 16, 32, 64))
    make = lambda: get_model(partial(GeneralRelu, leak=0.1, sub=0.4), nfs=nfs, norm=nn.BatchNorm2d).apply(partial(init_weights, leaky=0.1))
    return dls, make

class Batches:
    "Batches of `bs` rows of float tensors `x`, `y` (a new order each pass when `shuffle`, from torch's global RNG)."
    def __init__(self, x, y, bs, shuffle=False): self.x,self.y,self.bs,self.shuffle = x,y,bs,shuffle
    def __len__(self): return -(-len(self.x)//self.bs)
    def __iter__(self):
        idx = torch.randperm(len(self.x)) if self.shuffle else torch.arange(len(self.x))
        for i in range(0, len(idx), self.bs): yield self.x[idx[i:i+self.bs]], self.y[idx[i:i+self.bs]]

class DLs:
    def __init__(self, train, valid): self.train,self.valid = train,valid

def synthetic(seed=0, n=20000, d=32, k=10):
    "A 3-layer MLP (no normalisation) on a 10-class problem labelled by a random teacher network."
    g = torch.Generator().manual_seed(seed)
    teacher = [torch.randn(d, 64, generator=g)/d**0.5, torch.randn(64, k, generator=g)/8]
    x = torch.randn(n + 5000, d, generator=g)
    y = (torch.tanh(x @ teacher[0]) @ teacher[1]).argmax(1)
    dls = DLs(Batches(x[:n], y[:n], 256, shuffle=True), Batches(x[n:], y[n:], 1024))
    make = lambda: nn.Sequential(nn.Linear(d, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, k))
    return dls, make

def run(dls, make, seed, epochs):
    "lr_find on a fresh model, then a one-cycle fit from the same weights at each suggestion: {method: (lr, accuracy)}."
    set_seed(seed)
    model = make(); init = {k: v.clone() for k,v in model.state_dict().items()}
    learn = TrainLearner(model, dls, F.cross_entropy, lr=1e-3, opt_func=partial(optim.AdamW, eps=1e-5))
    res = learn.lr_find(plot=False)
    lrs = dict(res.suggestions, old=old_rule(res.lrs, res.losses), fixed=6e-2)
    out,done = {},{}
    for k,lr in lrs.items():
        key = f'{lr:.6g}'
        if key not in done:
            set_seed(seed); model.load_state_dict(init)
            m = MetricsCB(accuracy=MulticlassAccuracy(), quiet=True)
            TrainLearner(model, dls, F.cross_entropy, lr=lr, opt_func=partial(optim.AdamW, eps=1e-5),
                         cbs=[m, BatchSchedCB(partial(OneCycle, pct_start=0.25))]).fit(epochs)
            acc = m.history[-1]['accuracy']
            done[key] = acc if math.isfinite(m.history[-1]['valid_loss']) else float('nan')
        out[k] = (lr, done[key])
    return out

def main():
    torch.set_num_threads(1)
    quick = '--quick' in sys.argv
    seeds = (0,) if quick else (0, 1, 2)
    problems = [('Fashion-MNIST conv net, 12k images, 3 epochs', lambda: fashion(12000), 3),
                ('Fashion-MNIST conv net x2 wide, 12k images, 3 epochs', lambda: fashion(12000, 2), 3),
                ('synthetic 10-class MLP (no norm), 20k points, 3 epochs', lambda: synthetic(), 3)]
    if quick: problems = problems[:1]
    methods = list(_SUGGESTERS) + ['old', 'fixed']
    rows,t0 = [],time.perf_counter()
    for name,get,epochs in problems:
        dls,make = get()
        for s in seeds:
            r = run(dls, make, s, epochs)
            rows.append((name, s, r))
            print(f'[{time.perf_counter()-t0:5.0f}s] {name} seed {s}: ' +
                  ', '.join(f'{k} {lr:.2e}->{a:.4f}' for k,(lr,a) in r.items()), flush=True)
    print(f'\n| problem | seed | ' + ' | '.join(methods) + ' |')
    print('|---|---|' + '---|'*len(methods))
    for name,s,r in rows:
        print(f'| {name} | {s} | ' + ' | '.join(f'{r[k][0]:.1e}: **{r[k][1]:.3f}**' for k in methods) + ' |')
    mean = {k: np.nanmean([r[k][1] for _,_,r in rows]) for k in methods}
    print('| mean accuracy | | ' + ' | '.join(f'{mean[k]:.3f}' for k in methods) + ' |')
    print(f'\n{time.perf_counter()-t0:.0f} s in all; torch {torch.__version__}, {torch.get_num_threads()} thread')

if __name__ == '__main__': main()
