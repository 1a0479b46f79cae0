"""The Learner's training step: gradient accumulation (update counting, schedules sized in updates, the big-batch
equivalence, skipped fp16 steps) and which callbacks may provide the steps (miniai.learner)."""
import collections, math
from copy import deepcopy
from functools import partial
import pytest
import torch
import torch.nn.functional as F
from torch import nn, optim
from fastcore.test import test_close as close_, test_eq as eq_
from miniai.learner import Learner, TrainLearner, Callback, GradAccumCB
from miniai.precision import MixedPrecisionCB
from miniai.sched import BatchSchedCB, OneCycle, CosineAnnealing, RecorderCB, rec_lr
from miniai.schedfamily import WSDSched, CosineSched
from loaders import DLs
from training_helpers import reg_batches, reg_dls, HookLog, sgd_mom

class NoLen:
    "An iterable of batches without __len__ (a streaming loader)."
    def __init__(self, batches): self.batches = batches
    def __iter__(self): return iter(self.batches)

class StepLog(Callback):
    "Where (epoch, iter) each optimizer step happened, and whether it was skipped."
    order = 90
    def before_fit(self, learn): self.steps = []
    def after_step(self, learn): self.steps.append((learn.epoch, learn.iter, learn.step_skipped))

SCHEDS = {
    'onecycle': partial(OneCycle, max_lr=0.1),
    'wsd': partial(WSDSched, warmup_pct=0.1, decay_pct=0.3, min_lr=1e-3),
    'cosine_annealing': partial(CosineAnnealing, eta_min=1e-3),
    'cosine_sched': partial(CosineSched, warmup_steps=1, min_lr=1e-3),
}

ACCUMS = [(n, nb) for n in (1, 2, 3, 7) for nb in (10, 11, 13)]

def sched_fit(sched, n, nb, n_epochs=3):
    rec,scb = RecorderCB(),BatchSchedCB(sched)
    cbs = [rec, scb] + ([GradAccumCB(n)] if n > 1 else [])
    learn = TrainLearner(nn.Linear(5, 2), reg_dls(nb), F.mse_loss, lr=0.1, opt_func=sgd_mom, cbs=cbs)
    learn.fit(n_epochs)
    return learn,rec,scb

def _manual_sgd(model, groups, lr):
    "One plain SGD step per group of batches, on the concatenation of the group."
    opt = optim.SGD(model.parameters(), lr=lr)
    for g in groups:
        x = torch.cat([b[0] for b in g]); y = torch.cat([b[1] for b in g])
        opt.zero_grad(); F.mse_loss(model(x), y).backward(); opt.step()

class InfGrads(Callback):
    "Fills the gradients with inf on the given (epoch, iter) batches."
    order = MixedPrecisionCB.order + 1
    def __init__(self, at): self.at = at
    def after_backward(self, learn):
        if (learn.epoch, learn.iter) in self.at:
            self.w = learn.model.weight.detach().clone()
            for p in learn.model.parameters(): p.grad.fill_(float('inf'))
    def after_step(self, learn):
        if (learn.epoch, learn.iter) in self.at: self.w_after = learn.model.weight.detach().clone()

class CountingTrainCB(Callback):
    "All five steps, counting the calls."
    def __init__(self): self.calls = collections.Counter()
    def predict(self, learn): self.calls['predict'] += 1; learn.preds = learn.model(learn.batch[0])
    def get_loss(self, learn): self.calls['get_loss'] += 1; learn.loss = learn.loss_func(learn.preds, learn.batch[1])
    def backward(self, learn): self.calls['backward'] += 1; learn.loss.backward()
    def step(self, learn): self.calls['step'] += 1; learn.opt.step()
    def zero_grad(self, learn): self.calls['zero_grad'] += 1; learn.opt.zero_grad()

@pytest.mark.parametrize('n', [1, 2, 3, 7])
@pytest.mark.parametrize('nb', [10, 11, 13])
def test_accum_counts_updates(n, nb):
    class Probe(Callback):
        def before_fit(self, learn): self.seen = (learn.accum, learn.updates_per_epoch, learn.total_updates)
    probe,log = Probe(),StepLog()
    learn = TrainLearner(nn.Linear(5, 2), reg_dls(nb), F.mse_loss, lr=0.01, cbs=[GradAccumCB(n), probe, log])
    learn.fit(2)
    upe = math.ceil(nb / n)
    eq_(probe.seen, (n, upe, 2*upe))  # known before any before_fit-driven schedule is built
    eq_((learn.updates_per_epoch, learn.total_updates, learn.n_updates), (upe, 2*upe, 2*upe))
    # steps after every n-th batch and after the last batch of the epoch (a shorter group)
    want = [i for i in range(nb) if (i + 1) % n == 0 or i == nb - 1]
    eq_(log.steps, [(e, i, False) for e in range(2) for i in want])

@pytest.mark.parametrize('name', list(SCHEDS))
def test_sched_ends_on_last_update_under_accum(name):
    sched = SCHEDS[name]
    for n,nb in ACCUMS:
        learn,rec,scb = sched_fit(sched, n, nb)
        T = 3 * math.ceil(nb / n)
        eq_((learn.total_updates, learn.n_updates, len(rec.recs['lr']), scb.n, scb.sched.T_max), (T,)*5)
        # the lrs the updates used are the schedule's values 0..T-1 of a schedule of T updates
        ref = sched(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1, momentum=0.9), T_max=T)
        close_(rec.recs['lr'], [ref.get_updated_values(k)[0] for k in range(T)], eps=1e-12)
        lr_after = learn.opt.param_groups[0]['lr']
        if name == 'onecycle':  # torch's convention: the last update trains at max_lr/div_final
            close_(rec.recs['lr'][0], 0.1/25, eps=1e-15)
            close_(rec.recs['lr'][-1], 0.1/1e5, eps=1e-15)
        else:  # the floor is reached exactly when the last update is done
            close_(lr_after, 1e-3, eps=1e-15)
            close_(scb.sched.get_updated_values(T)[0], 1e-3, eps=1e-15)
            assert rec.recs['lr'][-1] > 1e-3 + 1e-9  # ... not earlier: the last update still trained above it

@pytest.mark.parametrize('name', list(SCHEDS))
def test_accum_lr_trajectory_equals_fewer_batches(name):
    sched = SCHEDS[name]
    for n,nb in ACCUMS:
        if n == 1: continue
        _,rec,_ = sched_fit(sched, n, nb)
        _,ref,_ = sched_fit(sched, 1, math.ceil(nb / n))
        eq_(rec.recs, ref.recs)
        eq_(rec.epochs, ref.epochs)

def test_accum_equals_one_big_batch():
    batches = reg_batches(4, bs=8)
    torch.manual_seed(0)
    m = nn.Linear(5, 2); ref = deepcopy(m); plain = deepcopy(m)
    learn = TrainLearner(m, DLs(batches, batches[:1]), F.mse_loss, lr=0.1, cbs=[GradAccumCB(4)])
    learn.fit(1, valid=False)
    eq_(learn.n_updates, 1)
    _manual_sgd(ref, [batches], 0.1)  # one step on the batch of 32
    for a,b in zip(m.parameters(), ref.parameters()): torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    TrainLearner(plain, DLs(batches, batches[:1]), F.mse_loss, lr=0.1).fit(1, valid=False)
    assert not torch.allclose(plain.weight, ref.weight, rtol=1e-3)  # the comparison can tell the difference

def test_accum_last_partial_group_is_stepped_as_its_own_batch():
    batches = reg_batches(10, bs=8)
    torch.manual_seed(0)
    m = nn.Linear(5, 2); ref = deepcopy(m)
    log = StepLog()
    learn = TrainLearner(m, DLs(batches, batches[:1]), F.mse_loss, lr=0.1, cbs=[GradAccumCB(4), log])
    learn.fit(1, valid=False)
    eq_(log.steps, [(0, 3, False), (0, 7, False), (0, 9, False)])
    _manual_sgd(ref, [batches[0:4], batches[4:8], batches[8:10]], 0.1)  # groups 4, 4, 2: the last divided by 2
    for a,b in zip(m.parameters(), ref.parameters()): torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)

@pytest.mark.parametrize('poison', [False, True])
def test_skipped_fp16_step_is_not_an_update(poison):
    rec,scb,log = RecorderCB(lr=rec_lr),BatchSchedCB(partial(OneCycle, max_lr=0.05)),StepLog()
    inf = InfGrads({(0, 3)} if poison else set())  # iter 3 ends the group (2, 3) under GradAccumCB(2)
    learn = TrainLearner(nn.Linear(5, 2), reg_dls(10, scale=0.1), F.mse_loss, lr=0.05, opt_func=sgd_mom,
                         cbs=[MixedPrecisionCB('fp16', device_type='cpu'), GradAccumCB(2), inf, rec, scb, log])
    learn.fit(2)
    eq_(learn.total_updates, 10)
    want = 9 if poison else 10
    eq_((learn.n_updates, scb.n, len(rec.recs['lr'])), (want, 10, want))  # a skipped step still takes its schedule slot (issue 17)
    eq_([s for s in log.steps if s[2]], [(0, 3, True)] if poison else [])
    if poison:
        assert torch.equal(inf.w, inf.w_after)  # the skipped step did not touch the weights
        assert learn.scaler.get_scale() < 65536.

@pytest.mark.parametrize('bad', [0, -1, 1.5, True, '2', None])
def test_grad_accum_bad_n(bad):
    with pytest.raises(ValueError, match='n='): GradAccumCB(bad)

def test_two_grad_accums_refused():
    log = HookLog()
    learn = TrainLearner(nn.Linear(5, 2), reg_dls(4), F.mse_loss, cbs=[GradAccumCB(2), log])
    with pytest.raises(ValueError, match='GradAccumCB'): learn.fit(1, cbs=[GradAccumCB(3)])
    eq_(log.log, [])
    eq_(len(learn.cbs), 2)  # the per-fit callback was removed

def test_accum_needs_len_of_train_loader():
    b = reg_batches(4)
    log = HookLog()
    learn = TrainLearner(nn.Linear(5, 2), DLs(NoLen(b), b[:1]), F.mse_loss, cbs=[GradAccumCB(2), log])
    with pytest.raises((TypeError, ValueError), match=r'len\(\)') as e: learn.fit(1)
    assert 'NoLen' in str(e.value)
    eq_(log.log, [])  # refused when the fit starts, before any hook
    learn2 = TrainLearner(nn.Linear(5, 2), DLs(NoLen(b), b[:1]), F.mse_loss)  # without accumulation it is fine
    learn2.fit(1)
    eq_(learn2.n_updates, 4)

@pytest.mark.parametrize('step', ['predict', 'get_loss', 'backward', 'step', 'zero_grad'])
def test_step_callback_under_train_learner_refused(step):
    MyStepCB = type('MyStepCB', (Callback,), {step: lambda self, learn: None})
    log = HookLog()
    m = nn.Linear(5, 2); w = m.weight.detach().clone()
    learn = TrainLearner(m, reg_dls(4), F.mse_loss, cbs=[log])
    with pytest.raises(TypeError, match=rf'MyStepCB.*`{step}`'): learn.fit(1, cbs=[MyStepCB()])
    eq_(log.log, [])
    assert torch.equal(m.weight, w)
    eq_(len(learn.cbs), 1)
    learn.fit(1)  # the learner is still usable
    eq_(learn.n_updates, 4)

@pytest.mark.parametrize('accum', [1, 2])
def test_plain_learner_runs_callback_steps(accum):
    torch.manual_seed(0)
    m = nn.Linear(5, 2); ref = deepcopy(m)
    cb = CountingTrainCB()
    acc = [GradAccumCB(accum)] if accum > 1 else []
    learn = Learner(m, reg_dls(4), F.mse_loss, lr=0.1, cbs=[cb] + acc)
    learn.fit(1)
    n_up = 4 // accum
    eq_(dict(cb.calls), dict(predict=6, get_loss=6, backward=4, step=n_up, zero_grad=n_up))
    eq_(learn.n_updates, n_up)
    TrainLearner(ref, reg_dls(4), F.mse_loss, lr=0.1, cbs=acc and [GradAccumCB(accum)]).fit(1)
    for a,b in zip(m.parameters(), ref.parameters()): assert torch.equal(a, b)
