"""BatchSchedCB / EpochSchedCB drive every kind of scheduler with the right count at the right moment.

For each kind: a tiny TrainLearner fit records the lr of every param group for each optimizer update (RecorderCB), and
the same scheduler run on its own in a plain loop (read the lr, optimizer.step(), scheduler.step()) must give the same
values. Also: nothing is stepped during validation; a skipped optimizer step (fp16) takes its slot of the schedule."""
import math, warnings
from functools import partial
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn, optim
from torch.optim import lr_scheduler

from miniai.learner import TrainLearner, Callback
from miniai.schedbase import SchedulerBase
from miniai.sched import BatchSchedCB, EpochSchedCB, RecorderCB
from miniai.schedfamily import (CosineSched, LinearSched, WSDSched, CosineRestartsSched, ChebyshevSched, ParamSched,
                                ProportionScheduler, CosineLrScheduler, SchedCos, SchedLin, combine_scheds)

warnings.filterwarnings('ignore', category=DeprecationWarning)
warnings.filterwarnings('ignore', message='Detected call of')
import pytorch_optimizer.lr_scheduler as po
import pytorch_accelerated.schedulers as pas  # (calls set_seed(42))
import pytorch_accelerated as pyacc
from miniai.compat import WSDLrScheduler

N_TRAIN,N_VALID,EPOCHS = 5,2,3
LRS = (0.1, 0.01)  # two param groups: the model's weight and its bias


# ---------------------------------------------------------------- a tiny fit and a plain loop
def two_group_sgd(params, lr):
    "opt_func: weight at `lr`, bias at lr/10 (two param groups with their own lrs)."
    w,b = list(params)
    return optim.SGD([{'params': [w], 'lr': lr}, {'params': [b], 'lr': lr*LRS[1]/LRS[0]}], lr=lr)

def data(n, seed):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 4, generator=g), torch.randn(8, 1, generator=g)) for _ in range(n)]

class LrLog(Callback):
    "lrs of both groups at the start of every batch, training and validation apart."
    order = 10
    def before_fit(self, learn): self.train,self.valid = [],[]
    def before_batch(self, learn):
        (self.train if learn.training else self.valid).append([pg['lr'] for pg in learn.opt.param_groups])

class SkipEvery3(Callback):
    "As an AMP grad scaler skipping a step: no gradients, so SGD leaves the weights alone, and `step_skipped`."
    def after_backward(self, learn):
        if learn.iter % 3 == 1: learn.opt.zero_grad(set_to_none=True); learn.step_skipped = True

def fit(sched_cb, epochs=EPOCHS, extra=(), seed=0, valid=True):
    "Fit a tiny model; returns (lrs of every update, both groups), the learner, the lr log."
    torch.manual_seed(seed)
    rec = RecorderCB(lr0=lambda cb: cb.learn.opt.param_groups[0]['lr'], lr1=lambda cb: cb.learn.opt.param_groups[1]['lr'])
    log = LrLog()
    dls = SimpleNamespace(train=data(N_TRAIN, 1), valid=data(N_VALID, 2))
    learn = TrainLearner(nn.Linear(4, 1), dls, F.mse_loss, lr=LRS[0], opt_func=two_group_sgd,
                         cbs=[sched_cb, rec, log, *extra])
    learn.fit(epochs, valid=valid)
    return [list(v) for v in zip(rec.recs['lr0'], rec.recs['lr1'])],learn,log

def dummy_opt():
    return optim.SGD([{'params': [nn.Parameter(torch.zeros(1))], 'lr': lr} for lr in LRS], lr=LRS[0])

def plain(make, n, step=lambda s, k: s.step()):
    "The lrs each of `n` updates trains with, in a plain loop: build, then read, optimizer.step(), scheduler step."
    opt = dummy_opt(); s = make(opt)
    res = []
    for k in range(n):
        res.append([pg['lr'] for pg in opt.param_groups])
        opt.step(); step(s, k)
    return res,s

def plain_epochs(make, epochs=EPOCHS, per=N_TRAIN):
    "A plain per-epoch loop: every update of an epoch trains with the lr set after the previous epoch."
    opt = dummy_opt(); s = make(opt)
    res = []
    for _ in range(epochs):
        for _ in range(per): res.append([pg['lr'] for pg in opt.param_groups]); opt.step()
        s.step()
    return res,s

def same(a, b): assert len(a) == len(b) and all(x == pytest.approx(y, rel=1e-13, abs=1e-18) for x,y in zip(a, b)), (a, b)

T = EPOCHS*N_TRAIN


# ---------------------------------------------------------------- per batch: miniai, pytorch-accelerated, torch, pytorch_optimizer
class HalfLife(SchedulerBase):
    "A stateless miniai scheduler (driven with step_update(n))."
    closed_form = True
    def get_updated_values(self, n): return [b*0.5**(n/4) for b in self.base_values]

BATCH = {
    # miniai, stateful (length filled by the callback)
    'CosineSched': (partial(CosineSched, warmup_pct=0.2, min_ratio=0.1), partial(CosineSched, T_max=T, warmup_pct=0.2, min_ratio=0.1)),
    'WSDSched': (partial(WSDSched, decay_pct=0.4, decay_shape='1-sqrt'), partial(WSDSched, T_max=T, decay_pct=0.4)),
    'CosineRestartsSched': (partial(CosineRestartsSched, n_cycles=2, warmup_steps=2),
                            partial(CosineRestartsSched, T_max=T, n_cycles=2, warmup_steps=2)),
    'CosineRestartsSched(epochs)': (partial(CosineRestartsSched, first_cycle_epochs=0.4, cycle_mult=2, warmup_epochs=0.2),
                            partial(CosineRestartsSched, T_max=T, first_cycle_epochs=0.4, cycle_mult=2, warmup_epochs=0.2,
                                    num_update_steps_per_epoch=N_TRAIN)),
    'ChebyshevSched': (ChebyshevSched, partial(ChebyshevSched, T_max=T)),
    'CosineLrScheduler': (partial(CosineLrScheduler, num_warmup_epochs=1),
                          partial(CosineLrScheduler, total_num_epochs=EPOCHS, num_update_steps_per_epoch=N_TRAIN, num_warmup_epochs=1)),
    'CosineLrScheduler.create_scheduler_fn': (CosineLrScheduler.create_scheduler_fn(num_warmup_epochs=1, min_lr_ratio=0.1),
                          partial(CosineLrScheduler, total_num_epochs=EPOCHS, num_update_steps_per_epoch=N_TRAIN,
                                  num_warmup_epochs=1, min_lr_ratio=0.1)),
    'WSDLrScheduler': (partial(WSDLrScheduler, num_checkpoints=3, decay_phase_ratio=1/3, num_warmup_steps=1, lr_min=0.1),
                       partial(WSDLrScheduler, total_steps=T, num_checkpoints=3, decay_phase_ratio=1/3, num_warmup_steps=1, lr_min=0.1)),
    'WSDLrScheduler.create_scheduler_fn': (WSDLrScheduler.create_scheduler_fn(num_checkpoints=3, decay_phase_ratio=0.3, lr_min=0.1),
                       partial(WSDLrScheduler, total_steps=T, num_checkpoints=3, decay_phase_ratio=0.3, lr_min=0.1, num_warmup_steps=None)),
    'WSDLrScheduler.create_scheduler_fn(placeholders)': (WSDLrScheduler.create_scheduler_fn(
                           total_num_epochs=pyacc.TrainerPlaceholderValues.NUM_EPOCHS, decay_phase_ratio=0.3),
                       partial(WSDLrScheduler, total_steps=T, decay_phase_ratio=0.3, num_warmup_steps=None)),
    'ParamSched(lr)': (partial(ParamSched, field='lr', f=SchedCos(1., 0.1), relative=True),
                       partial(ParamSched, field='lr', f=SchedCos(1., 0.1), T_max=T, relative=True)),
    # pytorch-accelerated (its own count: the first step() evaluates n=0)
    'pyacc CosineLrScheduler': (partial(pas.CosineLrScheduler, num_warmup_epochs=1, lr_min=1e-4),
                                partial(pas.CosineLrScheduler, total_num_epochs=EPOCHS, num_update_steps_per_epoch=N_TRAIN,
                                        num_warmup_epochs=1, lr_min=1e-4)),
    'pyacc create_scheduler_fn': (pas.CosineLrScheduler.create_scheduler_fn(lr_min=1e-4, k_decay=2.),
                                  partial(pas.CosineLrScheduler, total_num_epochs=EPOCHS, num_update_steps_per_epoch=N_TRAIN,
                                          lr_min=1e-4, k_decay=2.)),
    # torch
    'OneCycleLR': (partial(lr_scheduler.OneCycleLR, max_lr=[0.1, 0.01]), partial(lr_scheduler.OneCycleLR, max_lr=[0.1, 0.01], total_steps=T)),
    'CosineAnnealingLR': (partial(lr_scheduler.CosineAnnealingLR, eta_min=1e-3),
                          partial(lr_scheduler.CosineAnnealingLR, T_max=T, eta_min=1e-3)),
    'LambdaLR': (partial(lr_scheduler.LambdaLR, lr_lambda=lambda k: 0.9**k),) * 2,
    # pytorch_optimizer (one lr for every group; their own counts)
    'po.LinearScheduler': (partial(po.LinearScheduler, max_lr=0.1, min_lr=1e-3, warmup_steps=3),
                           partial(po.LinearScheduler, t_max=T, max_lr=0.1, min_lr=1e-3, warmup_steps=3)),
    'po.CosineScheduler': (partial(po.CosineScheduler, max_lr=0.1, warmup_steps=3),
                           partial(po.CosineScheduler, t_max=T, max_lr=0.1, warmup_steps=3)),
    'po.REXScheduler': (partial(po.REXScheduler, max_lr=0.1), partial(po.REXScheduler, total_steps=T, max_lr=0.1)),
    'po.CosineAnnealingWarmupRestarts': (partial(po.CosineAnnealingWarmupRestarts, first_cycle_steps=6, max_lr=0.1, warmup_steps=2),) * 2,
}

def sched_count(s):
    "How many times the scheduler was stepped, in its own terms."
    if isinstance(s, po.REXScheduler): return s.step_t - 1          # its construction already counts one step
    if isinstance(s, po.CosineScheduler.__mro__[1]): return s.step_t  # pytorch_optimizer's warmup-decay base
    if isinstance(s, pas.CosineLrScheduler): return s._num_updates + 1  # starts at -1
    if isinstance(s, SchedulerBase): return s.num_updates              # miniai
    return s.last_epoch                                                # torch LRScheduler

@pytest.mark.parametrize('name', list(BATCH))
def test_batch_sched(name):
    cb_sched,ref_sched = BATCH[name]
    cb = BatchSchedCB(cb_sched)
    got,learn,log = fit(cb)
    ref,ref_s = plain(ref_sched, T)
    same(got, ref)
    assert learn.n_updates == cb.n == T and sched_count(cb.sched) == sched_count(ref_s) == T
    # no step during validation: each validation pass sees the lr left by the last update of its epoch
    after = [ref[(e + 1)*N_TRAIN] for e in range(EPOCHS - 1)]
    assert log.valid[:(EPOCHS - 1)*N_VALID] == [v for v in after for _ in range(N_VALID)]
    assert log.valid[-1] == [pg['lr'] for pg in learn.opt.param_groups]

def test_batch_stateless_miniai():
    "A stateless miniai scheduler is driven with step_update(n), n = the updates done."
    calls = []
    class Spy(HalfLife):
        def step_update(self, n): calls.append(n); super().step_update(n)
    got,learn,_ = fit(BatchSchedCB(Spy))
    assert calls == list(range(1, T + 1))   # one call per update, with the number of updates done
    ref,_ = plain(HalfLife, T, step=lambda s, k: s.step_update(k + 1))
    same(got, ref)

def test_batch_annealer_functions():
    "Plain functions of pos in [0, 1], and miniai's annealer objects, set the lr of every group."
    def f(pos): return 0.1*(1 - pos) + 1e-3
    for ann in (f, SchedCos(0.1, 1e-3), combine_scheds([0.4, 0.6], [SchedLin(0.01, 0.1), SchedCos(0.1, 0.)])):
        got,learn,_ = fit(BatchSchedCB(ann))
        same(got, [[ann(k/T)]*2 for k in range(T)])

def test_batch_param_sched_weight_decay():
    "The brief's example: BatchSchedCB(partial(ParamSched, field='weight_decay', f=SchedCos(1e-2, 1e-4)))."
    torch.manual_seed(0)
    rec = RecorderCB(wd=lambda cb: cb.learn.opt.param_groups[0]['weight_decay'])
    dls = SimpleNamespace(train=data(N_TRAIN, 1), valid=data(N_VALID, 2))
    learn = TrainLearner(nn.Linear(4, 1), dls, F.mse_loss, lr=0.1, opt_func=partial(optim.SGD, weight_decay=0.),
                         cbs=[BatchSchedCB(partial(ParamSched, field='weight_decay', f=SchedCos(1e-2, 1e-4))), rec])
    learn.fit(EPOCHS)
    same(rec.recs['wd'], [SchedCos(1e-2, 1e-4)(k/T) for k in range(T)])

def test_batch_proportion_after_lr():
    "A ProportionScheduler in a second BatchSchedCB, ordered after the lr's, follows the lr of the same update."
    rho = BatchSchedCB(partial(ProportionScheduler, max_lr=0.1, min_lr=0., max_value=0.05, min_value=0.))
    rho.order = 1
    got,learn,_ = fit(BatchSchedCB(partial(CosineSched, min_ratio=0.)), extra=[rho])
    assert [pg['rho'] for pg in learn.opt.param_groups] == [0.05*pg['lr']/0.1 for pg in learn.opt.param_groups]

@pytest.mark.parametrize('name', ['CosineSched', 'OneCycleLR', 'po.LinearScheduler', 'pyacc CosineLrScheduler'])
def test_skipped_steps_still_step(name):
    """A skipped optimizer step (step_skipped) is not an update, but it takes its slot of the schedule (the schedule
    follows the iteration, as torch's and fastai's do): the fit ends at the schedule's end; the real updates
    trained with the values of their slots."""
    cb_sched,ref_sched = BATCH[name]
    cb = BatchSchedCB(cb_sched)
    got,learn,_ = fit(cb, extra=[SkipEvery3()])
    n = learn.n_updates
    assert n == EPOCHS*(N_TRAIN - len(range(1, N_TRAIN, 3))) and n == len(got) and cb.n == T and sched_count(cb.sched) == T
    ref,_ = plain(ref_sched, T)
    same(got, [ref[k] for k in range(T) if k % N_TRAIN % 3 != 1])


# ---------------------------------------------------------------- per epoch
EPOCH = {
    'StepLR': partial(lr_scheduler.StepLR, step_size=1, gamma=0.5),
    'CosineAnnealingLR': (partial(lr_scheduler.CosineAnnealingLR, eta_min=1e-3),
                          partial(lr_scheduler.CosineAnnealingLR, T_max=EPOCHS, eta_min=1e-3)),
    'CosineSched': (partial(CosineSched, warmup_steps=1), partial(CosineSched, T_max=EPOCHS, warmup_steps=1)),
    'CosineLrScheduler': (CosineLrScheduler.create_scheduler_fn(num_warmup_epochs=1),
                          partial(CosineLrScheduler, total_num_epochs=EPOCHS, num_update_steps_per_epoch=1, num_warmup_epochs=1)),
    'pyacc CosineLrScheduler': (pas.CosineLrScheduler.create_scheduler_fn(lr_min=1e-4),
                                partial(pas.CosineLrScheduler, total_num_epochs=EPOCHS, num_update_steps_per_epoch=1, lr_min=1e-4)),
}

@pytest.mark.parametrize('name', list(EPOCH))
def test_epoch_sched(name):
    s = EPOCH[name]
    cb_sched,ref_sched = s if isinstance(s, tuple) else (s, s)
    cb = EpochSchedCB(cb_sched)
    got,learn,log = fit(cb, epochs=EPOCHS)
    ref,ref_s = plain_epochs(ref_sched, EPOCHS)
    same(got, ref)
    assert cb.n == EPOCHS and sched_count(cb.sched) == sched_count(ref_s) == EPOCHS
    # the lr changes only between epochs, and validation sees the lr of the next epoch
    for e in range(EPOCHS): assert len({tuple(v) for v in got[e*N_TRAIN:(e + 1)*N_TRAIN]}) == 1
    assert log.valid[:N_VALID*(EPOCHS - 1):N_VALID] == [ref[(e + 1)*N_TRAIN] for e in range(EPOCHS - 1)]

def test_reduce_lr_on_plateau_gets_the_validation_loss():
    "ReduceLROnPlateau, stepped after each validation pass with the mean validation loss: same lrs as a plain loop."
    seen = []
    class Plateau(lr_scheduler.ReduceLROnPlateau):
        def step(self, metrics): seen.append(metrics); super().step(metrics)
    mk = partial(Plateau, factor=0.5, patience=0, threshold=0.3)
    cb = EpochSchedCB(mk)
    got,learn,log = fit(cb, epochs=6)
    # the plain loop: same model, data and order
    torch.manual_seed(0)
    model = nn.Linear(4, 1); opt = two_group_sgd(model.parameters(), LRS[0]); s = lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=0, threshold=0.3)
    train,valid = data(N_TRAIN, 1),data(N_VALID, 2)
    ref,losses = [],[]
    for _ in range(6):
        for x,y in train:
            ref.append([pg['lr'] for pg in opt.param_groups])
            loss = F.mse_loss(model(x), y); loss.backward(); opt.step(); opt.zero_grad()
        with torch.no_grad(): vl = sum(F.mse_loss(model(x), y).item()*len(x) for x,y in valid)/sum(len(x) for x,_ in valid)
        losses.append(vl); s.step(vl)
    assert seen == pytest.approx(losses, rel=1e-6) and len(seen) == 6
    same(got, ref)
    assert got[-1][0] < LRS[0]   # it did reduce

def test_epoch_annealer():
    def f(pos): return 0.1*(1 - pos)
    got,_,_ = fit(EpochSchedCB(f), epochs=4)
    same(got, [[f(e/4)]*2 for e in range(4) for _ in range(N_TRAIN)])

def test_no_valid_pass_still_right():
    "Fitting without validation changes nothing for per-batch scheduling."
    got,learn,log = fit(BatchSchedCB(partial(CosineSched, warmup_pct=0.2)), valid=False)
    same(got, plain(partial(CosineSched, T_max=T, warmup_pct=0.2), T)[0])
    assert log.valid == []
