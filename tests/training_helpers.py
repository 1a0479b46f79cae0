"""Helpers shared by the training tests (test_steps, test_precision, test_checkpoint, test_saveload): small data sets,
logging callbacks, and the reference fits the resume tests compare against."""
import torch
from torch import optim
from fastcore.test import test_eq as eq_
from miniai.learner import Callback, MetricsCB, HOOKS
from loaders import DLs

def reg_batches(n_batches, bs=8, d=5, seed=0):
    "Regression batches of equal size (so a mean over a group of batches is the mean over their concatenation)."
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_batches*bs, d, generator=g); y = x @ torch.randn(d, 2, generator=g) + 0.3
    return [(x[i*bs:(i+1)*bs], y[i*bs:(i+1)*bs]) for i in range(n_batches)]

def reg_dls(n_batches, bs=8, scale=1.):
    "`scale` < 1 keeps float16 gradients under GradScaler's initial scale (65536) from overflowing (no skipped steps)."
    b = [(x*scale, y*scale) for x,y in reg_batches(n_batches, bs)]
    return DLs(b, b[:2])

def class_data(n=256, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g); y = (x[:, 0] + x[:, 1] > 0).long()
    return x,y

def class_dls(n=256, bs=32, nv=2):
    x,y = class_data(n)
    b = [(x[i:i+bs], y[i:i+bs]) for i in range(0, n, bs)]
    return DLs(b, b[:nv])

class HookLog(Callback):
    "Logs every hook called."
    def __init__(self): self.log = []
    def __getattr__(self, nm):
        if nm in HOOKS: return lambda learn: self.log.append(nm)
        raise AttributeError(nm)

def sgd_mom(params, lr): return optim.SGD(params, lr=lr, momentum=0.9)

def quiet_metrics(*a, **kw):
    m = MetricsCB(*a, **kw)
    m.listeners.clear()
    return m

def same(a, b):
    (wa,ra,ha,na),(wb,rb,hb,nb) = a,b
    eq_(set(wa), set(wb))
    for k in wa: assert torch.equal(wa[k], wb[k]), k
    eq_(ra, rb); eq_(ha, hb); eq_(na, nb)
