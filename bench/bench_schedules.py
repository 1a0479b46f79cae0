"""Which schedule? Measured, not asserted: the same model, data and optimizer trained with each lr schedule of
miniai (constant, cosine, warmup-cosine, OneCycle, linear, poly, REX, WSD, cosine restarts, Chebyshev), each at its
best lr from a small sweep, on several seeds and several budgets (epochs).

The job: miniai's default conv net (`fit_fashion_mnist`: GeneralRelu(leak=0.1, sub=0.4), BatchNorm, AdamW eps 1e-5,
batch 512) on the first 10,000 Fashion-MNIST training images, one torch thread.

1. lr sweep: every schedule at each of its candidate lrs, on one seed (`SWEEP_SEED`, not one of the evaluation seeds),
   at the middle budget (5 epochs), scored on a held-out split of the *training* set (images 50,000-59,999), so that
   the test set plays no part in choosing the lr.
2. Evaluation: each schedule at its chosen lr, on seeds 0..n-1, at every budget; scored on the 10,000 test images.
   Seeds are the outer loop, so a run stopped early still holds every schedule and budget for the seeds it finished.

Results go to bench/schedules_results.json after every training run (atomically), so a partial run is usable, and a
rerun skips the runs already there (same config). Run: `python bench/bench_schedules.py [--seeds 5] [--max-minutes 25]`;
`--fresh` starts over. Prints a table: schedule, lr, budget, mean test accuracy, min-max over seeds."""
import argparse, json, math, os, platform, statistics, sys, time
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from miniai.core import atomic_write
from miniai.sched import OneCycle
from miniai.schedfamily import (CosineSched, LinearSched, PolySched, RexSched, WSDSched, CosineRestartsSched,
                                ChebyshevSched)

RESULTS = Path(__file__).with_name('schedules_results.json')
LRS = [1e-3, 3e-3, 1e-2, 3e-2, 6e-2, 1e-1]  # peak lrs tried for every schedule (the CLI's default is 6e-2 with OneCycle)
WU = dict(warmup_pct=0.1)  # the warmup given to the warmup-decay schedules

# name -> (the scheduler recipe for `BatchSchedCB`, or None for a constant lr; the lrs swept; a one-line description)
SCHEDULES = {
    'constant':      (None, LRS, 'no schedule: the lr all the way'),
    'cosine':        (CosineSched, LRS, 'half a cosine from the lr to 0, no warmup'),
    'warmup-cosine': (partial(CosineSched, **WU), LRS, '10% linear warmup, then half a cosine to 0'),
    'onecycle':      (OneCycle, LRS, "OneCycle: 25% cosine warmup from lr/25, cosine down to lr/1e5; beta1 0.95-0.85-0.95"),
    'linear':        (partial(LinearSched, **WU), LRS, '10% warmup, then a straight line to 0'),
    'poly2':         (partial(PolySched, power=2., **WU), LRS, '10% warmup, then (1-p)^2 to 0 (drops early)'),
    'rex':           (partial(RexSched, **WU), LRS, '10% warmup, then REX (1-p)/(1-p/2) to 0 (stays high, drops late)'),
    'wsd':           (partial(WSDSched, decay_pct=0.2, decay_shape='1-sqrt', **WU), LRS,
                      '10% warmup, 70% stable at the lr, 20% 1-sqrt decay to 0'),
    'cos-restarts':  (partial(CosineRestartsSched, n_cycles=3, cycle_mult=2.), LRS,
                      'SGDR: 3 cosine cycles to 0, each twice as long as the one before'),
    # ChebyshevSched multiplies the base lr by up to 1/small_m = 20: its lrs are the base, 20x below the peak
    'chebyshev':     (partial(ChebyshevSched, pow2=False), [5e-5, 1.5e-4, 5e-4, 1.5e-3, 3e-3, 5e-3],
                      'Chebyshev step sizes in fractal order: base lr x 1 ... 20 (the lr shown is the base)'),
}
BUDGETS = [1, 2, 5, 10]
SWEEP_BUDGET = 5
SWEEP_SEED = 100
N_TRAIN, BS = 10_000, 512

def machine()->str:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'
    return (f"{os.cpu_count()}-core {platform.machine()} CPU, {gpu}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} thread(s)")

def config()->dict:
    "What the results depend on: a rerun with a different config starts over instead of mixing runs."
    return dict(n_train=N_TRAIN, bs=BS, budgets=BUDGETS, sweep_budget=SWEEP_BUDGET, sweep_seed=SWEEP_SEED,
                schedules={k: dict(lrs=v[1], desc=v[2]) for k,v in SCHEDULES.items()},
                model="get_model(GeneralRelu(leak=0.1, sub=0.4), norm=BatchNorm2d), init_weights(leaky=0.1)",
                opt="AdamW(eps=1e-5), wd 0.01 (torch default)",
                sweep_valid='train images 50000-59999', test='the 10000 test images')

_DATA = {}
def data():
    "(train, sweep-valid, test) `MemoryDL`s, built once."
    if not _DATA:
        from miniai.datasets import fashion_mnist_tensors, MemoryDL, FASHION_MEAN, FASHION_STD
        d = fashion_mnist_tensors()
        (xt, yt), (xv, yv) = d['train'], d['test']
        st = dict(mean=FASHION_MEAN, std=FASHION_STD)
        _DATA['train'] = MemoryDL(xt[:N_TRAIN], yt[:N_TRAIN], BS, shuffle=True, **st)
        _DATA['sweep'] = MemoryDL(xt[50_000:60_000], yt[50_000:60_000], BS, **st)
        _DATA['test'] = MemoryDL(xv, yv, BS, **st)
    return _DATA

def train(name:str, lr:float, epochs:int, seed:int, valid:str='test')->dict:
    "Train the default model with schedule `name` at `lr` for `epochs`; the final accuracy on `valid` and the time."
    import torch.nn.functional as F
    from torch import nn, optim
    from torcheval.metrics import MulticlassAccuracy
    from miniai.datasets import DataLoaders
    from miniai.learner import TrainLearner, MetricsCB
    from miniai.activations import set_seed
    from miniai.init import GeneralRelu, get_model, init_weights
    from miniai.sched import BatchSchedCB
    d = data()
    set_seed(seed)
    dls = DataLoaders(d['train'], d[valid])
    model = get_model(partial(GeneralRelu, leak=0.1, sub=0.4), norm=nn.BatchNorm2d).apply(partial(init_weights, leaky=0.1))
    metrics = MetricsCB(accuracy=MulticlassAccuracy())
    metrics.listeners.clear()
    cbs = [metrics]
    sched = SCHEDULES[name][0]
    if sched is not None: cbs.append(BatchSchedCB(sched))
    learn = TrainLearner(model, dls, F.cross_entropy, lr=lr, cbs=cbs, opt_func=partial(optim.AdamW, eps=1e-5))
    t = time.perf_counter()
    learn.fit(epochs)
    h = metrics.history[-1]
    acc = float(h['accuracy'])
    return dict(sched=name, lr=lr, epochs=epochs, seed=seed, valid=valid, acc=acc if math.isfinite(acc) else None,
                train_loss=float(h['train_loss']), valid_loss=float(h['valid_loss']), seconds=time.perf_counter() - t)

def load(fresh:bool=False)->dict:
    if not fresh and RESULTS.exists():
        res = json.loads(RESULTS.read_text())
        if res.get('config') == config(): return res
        print(f"{RESULTS} holds runs of another config: starting over", flush=True)
    return dict(config=config(), machine=machine(), sweep=[], best_lr={}, runs=[], seconds=0., complete=False)

def save(res:dict): atomic_write(RESULTS, lambda f: f.write(json.dumps(res, indent=1).encode()))

def best_lrs(sweep:list)->dict:
    "Each schedule's lr with the highest sweep accuracy (a diverged run counts as 0)."
    best = {}
    for r in sweep:
        a = r['acc'] or 0.
        if r['sched'] not in best or a > best[r['sched']][1]: best[r['sched']] = (r['lr'], a)
    return {k: v[0] for k,v in best.items()}

def table(res:dict)->list:
    "Rows (schedule, lr, budget, n seeds, mean, min, max) of the evaluation runs."
    rows = []
    for name in SCHEDULES:
        for b in BUDGETS:
            accs = [r['acc'] or 0. for r in res['runs'] if r['sched'] == name and r['epochs'] == b]
            if accs: rows.append(dict(sched=name, lr=res['best_lr'][name], budget=b, n=len(accs),
                                      mean=statistics.mean(accs), min=min(accs), max=max(accs)))
    return rows

def print_table(res:dict):
    print(f"\n{'schedule':14} {'lr':>7} {'epochs':>6} {'seeds':>5} {'mean acc':>8}  min-max over seeds")
    for r in table(res):
        print(f"{r['sched']:14} {r['lr']:7.1e} {r['budget']:6} {r['n']:5} {r['mean']:8.4f}  {r['min']:.4f}-{r['max']:.4f}")

def main(seeds:int=3, max_minutes:float=25., fresh:bool=False):
    torch.set_num_threads(1)
    res = load(fresh)
    res['machine'] = machine()
    t0,spent0 = time.perf_counter(),res['seconds']
    def tick(r):
        res['seconds'] = spent0 + time.perf_counter() - t0
        save(res)
        return time.perf_counter() - t0 > max_minutes*60
    done = {(r['sched'], r['lr'], r['epochs'], r['seed'], r['valid']) for r in res['sweep'] + res['runs']}
    print(f"{machine()}; {N_TRAIN} training images, batch {BS}; {len(done)} runs already in {RESULTS.name}", flush=True)
    for name,(_, lrs, _) in SCHEDULES.items():  # 1. the lr sweep
        for lr in lrs:
            if (name, lr, SWEEP_BUDGET, SWEEP_SEED, 'sweep') in done: continue
            r = train(name, lr, SWEEP_BUDGET, SWEEP_SEED, 'sweep')
            res['sweep'].append(r)
            print(f"sweep {name:14} lr {lr:7.1e}: {r['acc']} ({r['seconds']:.1f} s)", flush=True)
            if tick(r): print('out of time in the sweep'); return res
    res['best_lr'] = best_lrs(res['sweep'])
    for name,lr in res['best_lr'].items():
        lrs = SCHEDULES[name][1]
        if lr in (lrs[0], lrs[-1]): print(f"note: {name}'s best lr {lr:.1e} is at the edge of its sweep", flush=True)
    for seed in range(seeds):  # 2. evaluation: seeds outermost, so a partial run is balanced
        for b in BUDGETS:
            for name,lr in res['best_lr'].items():
                if (name, lr, b, seed, 'test') in done: continue
                r = train(name, lr, b, seed)
                res['runs'].append(r)
                print(f"seed {seed} {b:2} epochs {name:14} lr {lr:7.1e}: {r['acc']:.4f} ({r['seconds']:.1f} s)", flush=True)
                if tick(r): print('out of time'); print_table(res); return res
    res['complete'] = True
    tick(None)
    print_table(res)
    print(f"\n{res['seconds']/60:.1f} min of training in all (this run and the ones it resumed)")
    return res

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--seeds', type=int, default=3, help='evaluation seeds (0..n-1)')
    p.add_argument('--max-minutes', type=float, default=25., help='stop (results kept) after this much wall time')
    p.add_argument('--fresh', action='store_true', help='ignore the runs already in the results file')
    a = p.parse_args()
    main(a.seeds, a.max_minutes, a.fresh)
