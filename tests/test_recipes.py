"Tests for miniai.recipes: fit_one_cycle / fit_flat_cos / fit_sgdr against fastai's formulas, wd, momentum, per-group peaks, resume, learn.recorder."
import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch import nn, optim
from matplotlib.figure import Figure

from miniai.learner import TrainLearner, Callback, CancelFitException
from miniai.datasets import DataLoaders
from miniai.sched import RecorderCB, rec_lr
from miniai.schedfamily import group_opt_func
from miniai.checkpoint import CheckpointCB
from miniai.recipes import combined_cos, sgdr_epochs, WeightDecayCB, one_cycle_sched


# ------------------------------------------------ fastai's definitions, written from its documentation
def fa_cos(start, end, pos): return start + (1 + math.cos(math.pi*(1 - pos)))*(end - start)/2

def fa_combine(pcts, fs):
    "fastai's combine_scheds: `fs[i]` over the fraction `pcts[i]`, each on its own [0, 1]."
    cum = [0.]
    for p in pcts: cum.append(cum[-1] + p)
    def f(pos):
        i = min(max(k for k,c in enumerate(cum) if pos >= c), len(cum) - 2)
        return fs[i]((pos - cum[i])/(cum[i+1] - cum[i]))
    return f

def fa_combined_cos(pct, a, b, c): return fa_combine([pct, 1 - pct], [partial(fa_cos, a, b), partial(fa_cos, b, c)])

def fa_sgdr(n_cycles, cycle_len, cycle_mult, lr_max):
    n_epoch = cycle_len*(cycle_mult**n_cycles - 1)//(cycle_mult - 1)
    pcts = [cycle_len*cycle_mult**i/n_epoch for i in range(n_cycles)]
    return n_epoch, fa_combine(pcts, [partial(fa_cos, lr_max, 0.)]*n_cycles)

def toy_learn(n_batches=10, lr=1e-2, opt_func=optim.AdamW, model=None, **kw):
    torch.manual_seed(0)
    x = torch.randn(n_batches*8, 4); y = (x.sum(1) > 0).long()
    bs = [(x[i:i+8], y[i:i+8]) for i in range(0, len(x), 8)]
    return TrainLearner(model or nn.Linear(4, 2), DataLoaders(bs, bs[:2]), F.cross_entropy, lr=lr, opt_func=opt_func, **kw)

def maxdiff(a, b): return max(abs(x - y) for x,y in zip(a, b, strict=True))


# ------------------------------------------------ equality with fastai, at every update
@pytest.mark.parametrize('n_epoch,nb,lr_max,div,div_final,pct', [(3, 10, 2e-2, 25., 1e5, 0.25), (2, 7, 1e-3, 10., 1e4, 0.3),
                                                                  (1, 13, 5e-2, 25., 1e5, 0.5), (4, 3, 1e-2, 25., 1e5, 0.1)])
def test_one_cycle_is_fastais(n_epoch, nb, lr_max, div, div_final, pct):
    learn = toy_learn(nb)
    learn.fit_one_cycle(n_epoch, lr_max, div=div, div_final=div_final, pct_start=pct)
    T = n_epoch*nb
    lr = [fa_combined_cos(pct, lr_max/div, lr_max, lr_max/div_final)(i/T) for i in range(T)]
    mom = [fa_combined_cos(pct, 0.95, 0.85, 0.95)(i/T) for i in range(T)]
    assert maxdiff(learn.recorder.recs['lr'], lr) < 1e-15*lr_max/1e-2
    assert maxdiff(learn.recorder.recs['mom'], mom) < 1e-15

def test_one_cycle_default_lr_and_moms():
    learn = toy_learn(lr=3e-3)
    learn.fit_one_cycle(2, moms=(0.9, 0.8, 0.7))
    T = 20
    assert maxdiff(learn.recorder.recs['lr'], [fa_combined_cos(0.25, 3e-3/25, 3e-3, 3e-8)(i/T) for i in range(T)]) < 1e-17
    assert maxdiff(learn.recorder.recs['mom'], [fa_combined_cos(0.25, 0.9, 0.8, 0.7)(i/T) for i in range(T)]) < 1e-15
    assert learn.opt.param_groups[0]['betas'][1] == 0.999  # beta2 untouched

@pytest.mark.parametrize('n_epoch,nb,lr,pct', [(4, 10, 1e-2, 0.75), (3, 7, 2e-3, 0.5), (1, 5, 1e-2, 1.)])
def test_flat_cos_is_fastais(n_epoch, nb, lr, pct):
    learn = toy_learn(nb)
    learn.fit_flat_cos(n_epoch, lr, pct_start=pct)
    T = n_epoch*nb
    assert maxdiff(learn.recorder.recs['lr'], [fa_combined_cos(pct, lr, lr, lr/1e5)(i/T) for i in range(T)]) < 1e-17
    assert set(learn.recorder.recs['mom']) == {0.9}  # momentum left alone

@pytest.mark.parametrize('n_cycles,cycle_len,mult,nb', [(3, 1, 2, 10), (2, 2, 3, 4), (4, 1, 2, 3), (1, 3, 2, 5)])
def test_sgdr_is_fastais(n_cycles, cycle_len, mult, nb):
    learn = toy_learn(nb)
    learn.fit_sgdr(n_cycles, cycle_len, 1e-2, cycle_mult=mult)
    n_epoch,f = fa_sgdr(n_cycles, cycle_len, mult, 1e-2)
    assert sgdr_epochs(n_cycles, cycle_len, mult) == n_epoch
    T = n_epoch*nb
    assert len(learn.recorder.recs['lr']) == T
    assert maxdiff(learn.recorder.recs['lr'], [f(i/T) for i in range(T)]) < 1e-17

def test_sgdr_equal_cycles():
    "cycle_mult=1 (fastai divides by zero): n_cycles cycles of cycle_len epochs."
    learn = toy_learn(5)
    learn.fit_sgdr(3, 2, 1e-2, cycle_mult=1)
    r = learn.recorder.recs['lr']
    assert len(r) == 30 and [i for i,v in enumerate(r) if v == 1e-2] == [0, 10, 20]
    assert r[0:10] == r[10:20] == r[20:30]

def test_accumulation_counts_updates():
    from miniai.learner import GradAccumCB
    learn = toy_learn(10)
    learn.fit_one_cycle(2, 1e-2, cbs=GradAccumCB(3))  # 4 updates per epoch
    T = 8
    assert maxdiff(learn.recorder.recs['lr'], [fa_combined_cos(0.25, 4e-4, 1e-2, 1e-7)(i/T) for i in range(T)]) < 1e-17


# ------------------------------------------------ groups, weight decay, momentum
def two_layer():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))

def final_peaks(learn): return [pg['lr']*1e5 for pg in learn.opt.param_groups]  # the groups end at peak/div_final

def test_group_peaks_follow_lr_mult():
    m = two_layer()
    learn = toy_learn(model=m, opt_func=group_opt_func(m, optim.AdamW, lr_mult=slice(0.1, 1.)))
    learn.fit_one_cycle(1, 1e-2)
    assert final_peaks(learn) == pytest.approx([1e-3, 1e-3, 1e-2, 1e-2], rel=1e-12)

@pytest.mark.parametrize('lr_max,want', [(slice(1e-4, 1e-2), [1e-4, 1e-2]), (slice(1e-2), [1e-3, 1e-2]), ([2e-3, 5e-3], [2e-3, 5e-3])])
def test_per_group_peaks(lr_max, want):
    m = two_layer()
    opt_func = lambda ps, lr: optim.AdamW([{'params': m[0].parameters()}, {'params': m[2].parameters()}], lr=lr)
    learn = toy_learn(model=m, opt_func=opt_func)
    learn.fit_one_cycle(1, lr_max)
    assert final_peaks(learn) == pytest.approx(want, rel=1e-12)

def test_wd_for_one_fit():
    m = two_layer()
    learn = toy_learn(model=m, opt_func=group_opt_func(m, optim.AdamW, wd=0.01))
    learn.fit_one_cycle(1, wd=0.3)
    assert [pg['weight_decay'] for pg in learn.opt.param_groups] == [0.3, 0., 0.3, 0.]  # no-wd groups stay 0
    learn.fit_flat_cos(1)
    assert [pg['weight_decay'] for pg in learn.opt.param_groups] == [0.01, 0., 0.01, 0.]  # the next fit: the optimizer's own
    learn = toy_learn(opt_func=optim.SGD)  # no group has any: all get it
    learn.fit_sgdr(1, 1, wd=1e-4)
    assert [pg['weight_decay'] for pg in learn.opt.param_groups] == [1e-4]
    with pytest.raises(ValueError, match='wd=-1'): WeightDecayCB(-1)

def test_momentum_only_when_the_optimizer_has_some():
    learn = toy_learn(opt_func=optim.SGD)  # momentum 0: not switched on
    learn.fit_one_cycle(1)
    assert set(learn.recorder.recs['mom']) == {0.}
    with pytest.raises(ValueError, match='no momentum to cycle'): learn.fit_one_cycle(1, moms=(0.95, 0.85, 0.95))
    learn = toy_learn(opt_func=partial(optim.SGD, momentum=0.9))
    learn.fit_one_cycle(1)
    assert learn.recorder.recs['mom'][0] == pytest.approx(0.95) and min(learn.recorder.recs['mom']) < 0.86
    learn = toy_learn(opt_func=optim.Adagrad)  # no momentum field at all
    learn.fit_one_cycle(1)
    assert all(math.isnan(v) for v in learn.recorder.recs['mom'])

def test_bad_arguments():
    learn = toy_learn()
    with pytest.raises(ValueError, match="start_epoch=2.*resume='ckpt.pt'"): learn.fit_one_cycle(5, start_epoch=2)
    with pytest.raises(ValueError, match='start_epoch'): learn.fit_sgdr(2, 1, start_epoch=1)
    with pytest.raises(ValueError, match='cycle_mult=1.5'): learn.fit_sgdr(2, 1, cycle_mult=1.5)
    with pytest.raises(ValueError, match='pct=1.5'): learn.fit_one_cycle(1, pct_start=1.5)
    with pytest.raises(ValueError, match='div=0'): learn.fit_one_cycle(1, div=0)
    with pytest.raises(ValueError, match='moms'): learn.fit_one_cycle(1, moms=(0.9, 0.8))
    learn.fit_one_cycle(1, reset_opt=True)  # accepted: every fit builds a new optimizer


# ------------------------------------------------ recorder
def test_recorder_property():
    learn = toy_learn()
    rec = learn.recorder
    assert isinstance(rec, RecorderCB) and learn.recorder is rec and rec in learn.cbs
    learn.fit(1)  # records a plain fit too
    assert len(rec.recs['lr']) == 10
    assert isinstance(rec.plot_sched(), Figure) and len(rec.plot_sched('lr').axes) == 1
    with pytest.raises(ValueError, match=r"not recorded: \['wd'\]"): rec.plot_sched(['lr', 'wd'])

def test_recorder_given_in_cbs_is_used():
    learn = toy_learn()
    mine = RecorderCB(lr=rec_lr)
    learn.fit_one_cycle(1, cbs=mine)
    assert len(mine.recs['lr']) == 10
    assert not any(isinstance(cb, RecorderCB) for cb in learn.cbs)  # none added to the learner
    own = RecorderCB(lr=rec_lr)
    learn = toy_learn(cbs=[own])
    learn.fit_flat_cos(1)
    assert learn.recorder is own and len(own.recs['lr']) == 10


# ------------------------------------------------ exact resume instead of start_epoch
class StopAt(Callback):
    order = 50
    def __init__(self, epoch, it): self.at = (epoch, it)
    def after_batch(self, learn):
        if learn.training and (learn.epoch, learn.iter) == self.at: raise CancelFitException()

def test_resume_continues_the_schedule(tmp_path):
    ck = tmp_path/'ck.pt'
    ref = toy_learn(); ref.fit_one_cycle(3, 1e-2)
    learn = toy_learn(cbs=[CheckpointCB(ck, verbose=False)])
    learn.fit_one_cycle(3, 1e-2, cbs=StopAt(1, 4))
    assert len(learn.recorder.recs['lr']) == 15
    learn = toy_learn(cbs=[CheckpointCB(ck, verbose=False)])  # as a new process would
    learn.fit_one_cycle(3, 1e-2, resume=ck)
    assert learn.recorder.recs == ref.recorder.recs
    for k,v in ref.model.state_dict().items(): assert torch.equal(v, learn.model.state_dict()[k]), k

def test_schedules_preview():
    from miniai.sched import sched_values
    v = sched_values(partial(one_cycle_sched, pct_start=0.3), n_steps=50, lr=1e-2, fields=['lr'])['lr'][0]
    assert maxdiff(v, [fa_combined_cos(0.3, 4e-4, 1e-2, 1e-7)(i/50) for i in range(50)]) < 1e-17
    assert combined_cos(0.25, 1., 10., 0.)(0.25) == 10.
