"""Framework overhead: a hand-written PyTorch loop against `TrainLearner` + `MetricsCB` (and + `ProgressCB`),
training the same conv net on the same in-memory batches, interleaved epoch by epoch in one run.

The ratio (learner seconds per epoch / hand loop seconds per epoch) is the figure that counts; absolute
times on a shared machine vary by ±30%."""
import statistics, time, io
from copy import deepcopy
from functools import partial

import torch
import torch.nn.functional as F
from torch import optim
from torcheval.metrics import MulticlassAccuracy

from miniai.activations import set_seed
from miniai.datasets import get_dls
from miniai.init import conv_net
from miniai.learner import TrainLearner, MetricsCB, ProgressCB

def _batches(dl): return [(xb, yb) for xb,yb in dl]

def hand_epoch(model, opt, train, valid):
    "What one writes by hand: a training pass, then a validation pass computing loss and accuracy."
    model.train()
    tot = 0.
    for xb,yb in train:
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        opt.zero_grad()
        tot += loss.item()*len(yb)
    model.eval()
    vloss,correct,n = 0.,0,0
    with torch.no_grad():
        for xb,yb in valid:
            preds = model(xb)
            vloss += F.cross_entropy(preds, yb).item()*len(yb)
            correct += (preds.argmax(1) == yb).sum().item(); n += len(yb)
    return vloss/n, correct/n

def bench_learner(rounds:int=6, n_train:int=None)->dict:
    "Seconds per epoch of each variant (median over `rounds` interleaved epochs) and the ratios to the hand loop."
    set_seed(0)
    dls = get_dls(bs=1024, n_train=n_train)
    train,valid = _batches(dls.train),_batches(dls.valid)
    model0 = conv_net()
    opt_func = partial(optim.AdamW, eps=1e-5)
    m_hand,m_l,m_p,m_g = deepcopy(model0),deepcopy(model0),deepcopy(model0),deepcopy(model0)
    opt_hand = opt_func(m_hand.parameters(), lr=1e-3)
    dl_pair = type('DLs', (), dict(train=train, valid=valid))()
    learn = TrainLearner(m_l, dl_pair, F.cross_entropy, lr=1e-3, opt_func=opt_func,
                         cbs=[MetricsCB(accuracy=MulticlassAccuracy())])
    sink = io.StringIO()
    learn.cbs[0].listeners.clear()
    learn_p = TrainLearner(m_p, dl_pair, F.cross_entropy, lr=1e-3, opt_func=opt_func,
                           cbs=[MetricsCB(accuracy=MulticlassAccuracy()), ProgressCB(bars=False, file=sink)])
    # the thread guard every fit carries by default, off: its cost is the ratio of the two TrainLearner rows
    learn_g = TrainLearner(m_g, dl_pair, F.cross_entropy, lr=1e-3, opt_func=opt_func, thread_guard=False,
                           cbs=[MetricsCB(accuracy=MulticlassAccuracy())])
    learn_g.cbs[0].listeners.clear()
    times = {'hand loop': [], 'TrainLearner + MetricsCB': [], '+ ProgressCB': [], 'TrainLearner + MetricsCB, thread_guard=False': []}
    hand_epoch(m_hand, opt_hand, train[:3], valid[:1])  # warm-up
    for r in range(rounds):
        for name,run in (('hand loop', lambda: hand_epoch(m_hand, opt_hand, train, valid)),
                         ('TrainLearner + MetricsCB', lambda: learn.fit(1)),
                         ('+ ProgressCB', lambda: learn_p.fit(1)),
                         ('TrainLearner + MetricsCB, thread_guard=False', lambda: learn_g.fit(1))):
            t = time.perf_counter(); run(); times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k,v in times.items()}
    base = med['hand loop']
    return dict(seconds_per_epoch=med, ratio={k: v/base for k,v in med.items()}, rounds=rounds,
                threads=torch.get_num_threads())

if __name__ == '__main__':
    res = bench_learner()
    for k,v in res['seconds_per_epoch'].items(): print(f"{k:46s} {v:6.3f} s/epoch  ratio {res['ratio'][k]:.3f}")
