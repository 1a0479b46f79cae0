"A fast.ai course-style flow (course22p2 names and imports) on miniai's compat modules miniai.conv, miniai.sgd, miniai.xtras."
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch import nn, optim
from torch.optim import lr_scheduler
from torch.utils.data import DataLoader, TensorDataset
from torcheval.metrics import MulticlassAccuracy
import fastcore.all as fc

# the course's imports, unchanged (star imports are how course notebooks use them)
from miniai.conv import *
from miniai.sgd import *
from miniai.xtras import *
from miniai.datasets import DataLoaders
from miniai.learner import Learner, TrainLearner, MomentumLearner, TrainCB, DeviceCB, MetricsCB, ProgressCB
from miniai.init import GeneralRelu, init_weights
import miniai.conv, miniai.sgd, miniai.xtras
from miniai import learner, init, sched


def test_names_are_miniais():
    "Every re-exported name is miniai's own object (no second definition), except the documented wrappers."
    assert miniai.conv.to_device is learner.to_device and miniai.conv.def_device == learner.def_device
    assert miniai.conv.conv is init.conv
    assert miniai.sgd.BatchSchedCB is sched.BatchSchedCB and miniai.sgd.RecorderCB is sched.RecorderCB
    assert miniai.xtras.BatchSchedCB is sched.BatchSchedCB and miniai.xtras.CosineAnnealing is sched.CosineAnnealing
    assert issubclass(miniai.xtras.OneCycle, sched.OneCycle)
    assert set(miniai.conv.__all__) == {'def_device', 'to_device', 'conv', 'collate_device'}

def course_data(n=512, seed=0):
    "A small 10-class image problem (class = which 8x8 patch of a 28x28 image is bright), as (x, y) datasets."
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = torch.randn(n, 1, 28, 28, generator=g)*0.5
    for i,c in enumerate(y.tolist()): x[i, 0, (c//4)*7:(c//4)*7 + 8, (c%4)*7:(c%4)*7 + 8] += 1.
    return TensorDataset(x, y)

def get_dls_course(bs=64):
    tds,vds = course_data(512, 0),course_data(256, 1)
    return DataLoaders(DataLoader(tds, bs, shuffle=True, collate_fn=collate_device),
                       DataLoader(vds, bs*2, collate_fn=collate_device))

def cnn_layers():
    return [conv(1, 8), conv(8, 16), conv(16, 32), conv(32, 64), conv(64, 10, act=False), nn.Flatten()]  # 28->14->7->4->2->1

def _lr(cb): return cb.pg['lr']
def _beta1(cb): return cb.pg['betas'][0]

def test_course_flow_onecyclelr(capsys):
    "Lesson 12's flow: Learner + TrainCB/DeviceCB/MetricsCB/ProgressCB, BatchSchedCB(partial(OneCycleLR, ...)), a recorder."
    torch.manual_seed(1)
    dls = get_dls_course()
    xb,yb = next(iter(dls.train))
    assert xb.device.type == torch.device(def_device).type and xb.shape == (64, 1, 28, 28)
    model = nn.Sequential(*cnn_layers())
    metrics = MetricsCB(accuracy=MulticlassAccuracy())
    cbs = [TrainCB(), DeviceCB(), metrics, ProgressCB(plot=False)]
    epochs,lr = 3,1e-2
    tmax = epochs * len(dls.train)
    sched_ = partial(lr_scheduler.OneCycleLR, max_lr=lr, total_steps=tmax)
    rec = RecorderCB(lr=_lr, mom=_beta1)
    xtra = [BatchSchedCB(sched_), rec]
    learn = Learner(model, dls, F.cross_entropy, lr=lr, cbs=cbs, opt_func=optim.AdamW)
    learn.fit(epochs, cbs=xtra)
    h = metrics.history
    assert len(h) == epochs and h[-1]['accuracy'] > 0.5 and h[-1]['valid_loss'] < h[0]['valid_loss']
    assert len(rec.recs['lr']) == tmax and max(rec.recs["lr"]) == pytest.approx(lr, rel=0.01)
    assert rec.recs['mom'][0] == pytest.approx(0.95)
    assert 'accuracy' in capsys.readouterr().out  # the metrics table
    rec.plot()

def test_course_flow_miniai_onecycle_and_recipes():
    "The write-up's flow: its OneCycle per batch via BatchSchedCB, TrainLearner, then fastai-style fit_one_cycle."
    torch.manual_seed(2)
    dls = get_dls_course()
    act = partial(GeneralRelu, leak=0.1, sub=0.4)
    model = nn.Sequential(conv(1, 8, act=act, norm=nn.BatchNorm2d), conv(8, 16, act=act, norm=nn.BatchNorm2d),
                          conv(16, 32, act=act), conv(32, 10, act=None), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model.apply(partial(init_weights, leaky=0.1))
    metrics = MetricsCB(accuracy=MulticlassAccuracy())
    metrics.listeners.clear()
    learn = TrainLearner(model, dls, F.cross_entropy, lr=1e-2, cbs=[DeviceCB(), metrics], opt_func=optim.AdamW)
    learn.fit(2, cbs=[BatchSchedCB(partial(OneCycle, max_lr=1e-2))])  # T_max filled from the fit
    learn.fit_one_cycle(2, 1e-2)
    assert metrics.history[-1]['accuracy'] > 0.5
    assert len(learn.recorder.recs['lr']) == 2*len(dls.train)

def test_onecycle_positional_is_refused_with_the_mapping():
    opt = optim.AdamW([nn.Parameter(torch.zeros(1))], lr=1e-2)
    with pytest.raises(TypeError) as e: OneCycle(opt, 100, 0.)
    msg = str(e.value)
    for s in ('max_lr, the PEAK lr', 'keep the lr at 0', 'OneCycle(opt, 100, max_lr=...)', 'div_final', 'OneCycleLR'):
        assert s in msg, s
    with pytest.raises(TypeError, match='PEAK'): OneCycle(opt, 100, 3e-2)
    s = OneCycle(opt, 100, max_lr=3e-2)
    assert max(s.get_updated_values(n)[0] for n in range(100)) == pytest.approx(3e-2)

def test_momentum_learner_and_hooks_course_style():
    torch.manual_seed(3)
    dls = get_dls_course()
    learn = MomentumLearner(nn.Sequential(*cnn_layers()), dls, F.cross_entropy, lr=0.1, cbs=[DeviceCB()], mom=0.85)
    learn.fit(1)
    class Probe(HasLearnCB):
        def after_batch(self, learn): self.seen = self.learn is learn
    p = Probe()
    learn.fit(1, cbs=p)
    assert p.seen and p.learn is None

def test_to_device_and_collate():
    b = to_device((torch.zeros(2), [torch.ones(1)]))
    assert isinstance(b, tuple) and isinstance(b[1], list)
    xb,yb = collate_device([(torch.zeros(3), 1), (torch.ones(3), 2)])
    assert xb.shape == (2, 3) and yb.tolist() == [1, 2]
