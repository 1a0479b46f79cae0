"""Training features: gradient accumulation (update counting, schedules sized in updates, the big-batch equivalence),
step dispatch, mixed precision, exact checkpoint/resume (also across a real kill -9 and a real Ctrl-C), the NaN
guard, early stopping / best model, and save/load/get_preds/predict_batch."""
import collections, importlib.util, math, os, random, re, signal, subprocess, sys, textwrap, time
from copy import deepcopy
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn, optim
from fastcore.test import test_close as close_, test_eq as eq_
from torcheval.metrics import MulticlassAccuracy

from miniai.learner import (Learner, TrainLearner, Callback, TrainCB, MetricsCB, GradAccumCB, HOOKS,
                            CancelFitException, load_checkpoint)
from miniai.precision import MixedPrecisionCB
from miniai.safefile import load_state
from miniai.augment import BatchTransformCB
from miniai.checkpoint import CheckpointCB, TerminateOnNaNCB, NonFiniteLossError, EarlyStoppingCB, SaveBestCB
from miniai.sched import BatchSchedCB, EpochSchedCB, OneCycle, CosineAnnealing, RecorderCB, rec_lr
from miniai.schedfamily import WSDSched, CosineSched
from miniai.core import clean_stale_tmp
from loaders import DLs, ShuffledDL

REPO = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------------------------- helpers
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

class NoLen:
    "An iterable of batches without __len__ (a streaming loader)."
    def __init__(self, batches): self.batches = batches
    def __iter__(self): return iter(self.batches)

class HookLog(Callback):
    "Logs every hook called."
    def __init__(self): self.log = []
    def __getattr__(self, nm):
        if nm in HOOKS: return lambda learn: self.log.append(nm)
        raise AttributeError(nm)

class StepLog(Callback):
    "Where (epoch, iter) each optimizer step happened, and whether it was skipped."
    order = 90
    def before_fit(self, learn): self.steps = []
    def after_step(self, learn): self.steps.append((learn.epoch, learn.iter, learn.step_skipped))

def sgd_mom(params, lr): return optim.SGD(params, lr=lr, momentum=0.9)

def quiet_metrics(*a, **kw):
    m = MetricsCB(*a, **kw)
    m._log = lambda row: None
    return m

def no_time(hist): return [{k:v for k,v in r.items() if k != 'time'} for r in hist]

@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

# ---------------------------------------------------------------------------------------------------- 1. accumulation
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

def _manual_sgd(model, groups, lr):
    "One plain SGD step per group of batches, on the concatenation of the group."
    opt = optim.SGD(model.parameters(), lr=lr)
    for g in groups:
        x = torch.cat([b[0] for b in g]); y = torch.cat([b[1] for b in g])
        opt.zero_grad(); F.mse_loss(model(x), y).backward(); opt.step()

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

# ---------------------------------------------------------------------------------------------------- 2. dispatch
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

class CountingTrainCB(Callback):
    "All five steps, counting the calls."
    def __init__(self): self.calls = collections.Counter()
    def predict(self, learn): self.calls['predict'] += 1; learn.preds = learn.model(learn.batch[0])
    def get_loss(self, learn): self.calls['get_loss'] += 1; learn.loss = learn.loss_func(learn.preds, learn.batch[1])
    def backward(self, learn): self.calls['backward'] += 1; learn.loss.backward()
    def step(self, learn): self.calls['step'] += 1; learn.opt.step()
    def zero_grad(self, learn): self.calls['zero_grad'] += 1; learn.opt.zero_grad()

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

# ---------------------------------------------------------------------------------------------------- 3. mixed precision
class SeenDtypes(Callback):
    order = MixedPrecisionCB.order + 1
    def before_fit(self, learn): self.seen = set()
    def after_loss(self, learn):
        self.seen.add((learn.training, learn.preds.dtype, learn.loss.dtype, next(learn.model.parameters()).dtype))

def _class_fit(cbs, n_epochs=3, lr=0.5):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))
    mcb = quiet_metrics(accuracy=MulticlassAccuracy())
    TrainLearner(model, class_dls(), F.cross_entropy, lr=lr, cbs=[mcb] + cbs).fit(n_epochs)
    return model,mcb.history[-1]

def test_bf16_on_cpu():
    seen = SeenDtypes()
    m32,h32 = _class_fit([])
    m16,h16 = _class_fit([MixedPrecisionCB('bf16'), seen])
    eq_(seen.seen, {(True, torch.bfloat16, torch.float32, torch.float32),
                        (False, torch.bfloat16, torch.float32, torch.float32)})
    assert all(p.dtype == torch.float32 for p in m16.parameters())
    assert abs(h16['valid_loss'] - h32['valid_loss']) < 0.05 and abs(h16['accuracy'] - h32['accuracy']) <= 0.05
    assert h16['accuracy'] > 0.85
    assert not torch.equal(m16[0].weight, m32[0].weight)  # it did run in bf16
    with torch.no_grad(): assert m16(torch.randn(2, 8)).dtype == torch.float32  # autocast left after the fit

@pytest.mark.parametrize('dtype', ['fp8', 32, torch.float32, 'float32', 'bf15'])
def test_mixed_precision_bad_dtype(dtype):
    with pytest.raises(ValueError, match='dtype='): MixedPrecisionCB(dtype)

@pytest.mark.parametrize('dev', ['tpu', 'gpu', 'mps', 0])
def test_mixed_precision_bad_device(dev):
    with pytest.raises(ValueError, match='device_type='): MixedPrecisionCB('bf16', device_type=dev)

@pytest.mark.parametrize('dtype', ['bf16', 'fp16'])
def test_mixed_precision_with_accum(dtype):
    torch.manual_seed(0)
    m0 = nn.Linear(5, 2)
    def run(mp, accum=3):
        m = deepcopy(m0)
        seen = SeenDtypes()
        learn = TrainLearner(m, reg_dls(10, scale=0.1), F.mse_loss, lr=0.5, cbs=[GradAccumCB(accum), seen] + mp)
        learn.fit(2)
        return torch.cat([(p - p0).flatten() for p,p0 in zip(m.parameters(), m0.parameters())]).detach(),learn,seen
    d32,l32,_ = run([])
    dlo,llo,seen = run([MixedPrecisionCB(dtype, device_type='cpu')])
    low = torch.bfloat16 if dtype == 'bf16' else torch.float16
    assert {s[1] for s in seen.seen} == {low}
    eq_((llo.n_updates, l32.n_updates), (8, 8))
    rel = lambda a, b: ((a - b).norm() / b.norm()).item()
    assert rel(dlo, d32) < 0.03  # the same training, up to the low precision of the forward pass
    d1,_,_ = run([MixedPrecisionCB(dtype, device_type='cpu')], accum=2)
    assert rel(d1, d32) > 0.1  # (which the comparison can tell from another accumulation)

# ---------------------------------------------------------------------------------------------------- 4. checkpoint / resume
_X,_Y = class_data(640)
def ck_dls(n=640): return DLs(ShuffledDL(_X[:n], _Y[:n], 64), ShuffledDL(_X[:128], _Y[:128], 64))

def make_learn(*extra, accum=1, sched='onecycle', opt_func=optim.AdamW, dls=None, rec=True):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.Dropout(0.2), nn.ReLU(), nn.Linear(16, 2))
    mcb = quiet_metrics(accuracy=MulticlassAccuracy())
    sch = (BatchSchedCB(partial(OneCycle, max_lr=0.05)) if sched == 'onecycle'
           else EpochSchedCB(partial(CosineAnnealing, eta_min=1e-4)))
    cbs = [mcb, sch] + ([RecorderCB()] if rec else []) + ([GradAccumCB(accum)] if accum > 1 else []) + list(extra)
    learn = TrainLearner(model, dls or ck_dls(), F.cross_entropy, lr=0.05, opt_func=opt_func, cbs=cbs)
    learn.mcb,learn.rec = mcb,(cbs[2] if rec else None)
    return learn

class StopAt(Callback):
    "Raises `exc` at hook `hook` when `(epoch, training, iter)` matches `at`."
    def __init__(self, hook, at, exc, order=50): self.hook,self.at,self.exc,self.order = hook,at,exc,order
    def __getattr__(self, nm):
        if nm != self.hook: raise AttributeError(nm)
        def f(learn):
            if (learn.epoch, learn.training, learn.iter) == self.at: raise self.exc()
        return f

def result(learn):
    return ({k:v.clone() for k,v in learn.model.state_dict().items()}, deepcopy(learn.rec.recs),
            no_time(learn.mcb.history), learn.n_updates)

def same(a, b):
    (wa,ra,ha,na),(wb,rb,hb,nb) = a,b
    eq_(set(wa), set(wb))
    for k in wa: assert torch.equal(wa[k], wb[k]), k
    eq_(ra, rb); eq_(ha, hb); eq_(na, nb)

_REFS = {}
def reference(accum=1, sched='onecycle', n_epochs=3):
    key = (accum, sched, n_epochs)
    if key not in _REFS:
        learn = make_learn(accum=accum, sched=sched)
        learn.fit(n_epochs)
        _REFS[key] = result(learn)
    return _REFS[key]

def stopped_then_resumed(tmp, stop, accum=1, sched='onecycle', n_epochs=3):
    ck = tmp/'ck.pt'
    ck.unlink(missing_ok=True)
    learn = make_learn(CheckpointCB(ck, verbose=False), accum=accum, sched=sched)
    try: learn.fit(n_epochs, cbs=StopAt(*stop))
    except KeyboardInterrupt: pass
    stopped = result(learn)
    learn = make_learn(CheckpointCB(ck, verbose=False), accum=accum, sched=sched)  # as a new process would
    learn.fit(n_epochs, resume=ck)
    return stopped,result(learn)

STOPS = [('after_batch', (1, True, 4)),   # mid-epoch
         ('after_batch', (0, True, 0)),   # after the first update
         ('after_batch', (2, True, 9)),   # after the last update
         ('after_batch', (1, False, 0)),  # during validation
         ('after_epoch', (0, False, 1))]  # at an epoch boundary (the end of its validation pass)

@pytest.mark.parametrize('exc', [CancelFitException, KeyboardInterrupt], ids=['cancel', 'ctrl-c'])
@pytest.mark.parametrize('stop', STOPS, ids=['mid_epoch', 'first_update', 'last_update', 'in_valid', 'epoch_end'])
def test_exact_resume(tmp_path, one_thread, stop, exc):
    stopped,resumed = stopped_then_resumed(tmp_path, (*stop, exc))
    ref = reference()
    same(resumed, ref)
    assert len(stopped[2]) < 3 or stopped[3] < ref[3]  # the first fit really stopped early

@pytest.mark.parametrize('exc', [CancelFitException, KeyboardInterrupt], ids=['cancel', 'ctrl-c'])
@pytest.mark.parametrize('stop', [('after_batch', (1, True, 4)),   # mid-group (groups 0-2, 3-5, 6-8, 9)
                                  ('after_batch', (0, True, 0)),   # after the first batch of the first group
                                  ('after_batch', (0, True, 9)),   # after the last, short group of an epoch
                                  ('after_batch', (1, True, 5)),   # at a group's end
                                  ('after_batch', (2, False, 0))], # during the last validation pass
                         ids=['mid_group', 'first_batch', 'short_group', 'group_end', 'in_valid'])
def test_exact_resume_with_accum(tmp_path, one_thread, stop, exc):
    stopped,resumed = stopped_then_resumed(tmp_path, (*stop, exc), accum=3)
    same(resumed, reference(accum=3))
    eq_(resumed[3], 12)

@pytest.mark.parametrize('stop', [('after_batch', (1, True, 4), KeyboardInterrupt),
                                  ('after_epoch', (0, False, 1), CancelFitException),
                                  ('after_batch', (1, False, 0), CancelFitException)],
                         ids=['mid_epoch', 'epoch_end', 'in_valid'])
def test_exact_resume_epoch_sched(tmp_path, one_thread, stop):
    stopped,resumed = stopped_then_resumed(tmp_path, stop, sched='cosine')
    ref = reference(sched='cosine')
    same(resumed, ref)

def test_exact_resume_with_random_augmentation(tmp_path, one_thread):
    """A BatchTransformCB drawing from torch's generator on every training batch, as `random_crop_flip` does: stopped
    mid-epoch and resumed by a new learner, the fit equals the uninterrupted one bit for bit (weights, records, metrics)."""
    noise = lambda: BatchTransformCB(lambda x: x + 0.1 * torch.randn_like(x))
    ref = make_learn(noise()); ref.fit(3)
    ck = tmp_path/'ck.pt'
    learn = make_learn(noise(), CheckpointCB(ck, verbose=False))
    with pytest.raises(KeyboardInterrupt): learn.fit(3, cbs=StopAt('after_batch', (1, True, 4), KeyboardInterrupt))
    learn = make_learn(noise(), CheckpointCB(ck, verbose=False))
    learn.fit(3, resume=ck)
    same(result(learn), result(ref))
    other = make_learn(); other.fit(3)  # and the augmentation did change the fit
    assert not all(torch.equal(a, b) for a,b in zip(result(other)[0].values(), result(ref)[0].values()))

def test_checkpoint_every_updates_resumes(tmp_path, one_thread):
    ck = tmp_path/'ck.pt'
    learn = make_learn(CheckpointCB(ck, every_epochs=None, every_updates=7, on_interrupt=False, verbose=False))
    # a crash (not an interruption): the last periodic checkpoint is the one to resume from
    with pytest.raises(RuntimeError, match='crash'):
        learn.fit(3, cbs=StopAt('after_batch', (1, True, 8), lambda: RuntimeError('crash')))
    st = load_checkpoint(ck)
    eq_((st['pos']['n_updates'], st['pos']['epoch'], st['pos']['phase'], st['pos']['batch']), (14, 1, 'train', 4))
    learn = make_learn(CheckpointCB(ck, every_epochs=None, every_updates=7, on_interrupt=False, verbose=False))
    learn.fit(3, resume=ck)
    same(result(learn), reference())

@pytest.fixture
def done_ck(tmp_path):
    "The checkpoint of a 2-epoch fit of `make_learn()`."
    ck = tmp_path/'done.pt'
    make_learn(CheckpointCB(ck, verbose=False)).fit(2)
    return ck

def _refused(learn, n_epochs, resume, *contains, exc=ValueError):
    w = {k:v.clone() for k,v in learn.model.state_dict().items()}
    with pytest.raises(exc) as e: learn.fit(n_epochs, resume=resume)
    for c in contains: assert c in str(e.value), (c, str(e.value))
    for k,v in learn.model.state_dict().items(): assert torch.equal(v, w[k]), k  # nothing was loaded

def test_resume_refused_other_n_epochs(done_ck):
    _refused(make_learn(), 3, done_ck, 'n_epochs: 2 in the checkpoint, 3 in this fit')

def test_resume_refused_other_batch_count(done_ck):
    _refused(make_learn(dls=ck_dls(576)), 2, done_ck, 'n_batches: 10 in the checkpoint, 9 in this fit')

def test_resume_refused_other_optimizer(done_ck):
    _refused(make_learn(opt_func=sgd_mom), 2, done_ck, "opt: 'AdamW' in the checkpoint, 'SGD' in this fit")

def test_resume_refused_other_accum(done_ck):
    _refused(make_learn(accum=3), 2, done_ck, 'accum: 1 in the checkpoint, 3 in this fit')

def test_resume_refused_missing_or_extra_stateful_cb(done_ck, tmp_path):
    _refused(make_learn(rec=False), 2, done_ck, 'RecorderCB')
    _refused(make_learn(SaveBestCB(path=tmp_path/'b.pt')), 2, done_ck, 'SaveBestCB')

def test_resume_refused_other_model(done_ck):
    "A checkpoint of another architecture (here: one layer more): a ValueError saying so, not torch's list of keys."
    st = load_checkpoint(done_ck)
    st['model'] = {**st['model'], 'extra.weight': torch.zeros(3)}
    _refused(make_learn(), 2, st, 'resume: the checkpoint holds another model', 'tensors in the checkpoint')

def test_resume_refused_not_a_checkpoint(tmp_path):
    learn = make_learn()
    junk = tmp_path/'junk.pt'; junk.write_text('not a checkpoint at all')
    _refused(learn, 2, junk, str(junk), 'not a miniai file')
    other = tmp_path/'other.pt'; torch.save({'a': 1}, other)
    _refused(learn, 2, other, 'not a miniai fit checkpoint')
    saved = tmp_path/'saved.pt'; learn.save(saved)  # a model file is not a fit checkpoint either
    _refused(learn, 2, saved, 'a file of weights written by Learner.save, not a fit checkpoint')
    _refused(learn, 2, tmp_path/'nope.pt', 'no such checkpoint', str(tmp_path/'nope.pt'), exc=FileNotFoundError)

_TMP_RE = re.compile(r'^\.ck\.pt\.miniai-[0-9a-f]{8}\.tmp$')

KILL_SCRIPT = '''
import sys, torch, torch.nn.functional as F
from torch import nn
from miniai.learner import TrainLearner, Callback
from miniai.checkpoint import CheckpointCB
torch.set_num_threads(1)
x,y = torch.randn(2, 2048),torch.randn(2, 4096)
class DLs: train,valid = [(x, y)]*100000,[(x, y)]
class Ready(Callback):
    order = CheckpointCB.order + 1
    def cleanup_batch(self, learn):
        if learn.n_updates == 1: print('ready', flush=True)
ck = CheckpointCB(sys.argv[1], every_epochs=None, every_updates=1, verbose=False)
TrainLearner(nn.Linear(2048, 4096), DLs(), F.mse_loss, lr=1e-4, cbs=[ck, Ready()]).fit(1)  # a 32 MB checkpoint
'''

def _env():
    env = dict(os.environ)
    env['PYTHONPATH'] = str(REPO) + os.pathsep + env.get('PYTHONPATH', '')
    return env

@pytest.mark.skipif(os.name != 'posix', reason='SIGKILL is POSIX')
def test_kill9_during_checkpoint_write(tmp_path):
    ck,rnd = tmp_path/'ck.pt',random.Random(0)
    torn = 0
    for i in range(3):
        p = subprocess.Popen([sys.executable, '-c', KILL_SCRIPT, str(ck)], cwd=tmp_path, env=_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = p.stdout.readline()  # after the first checkpoint is written
            assert line.strip() == 'ready', p.stderr.read()
            time.sleep(rnd.uniform(0, 0.3))
            deadline = time.monotonic() + 5
            while not any(_TMP_RE.match(f.name) for f in tmp_path.iterdir()):  # a write is under way
                assert time.monotonic() < deadline and p.poll() is None
            time.sleep(rnd.uniform(0, 0.02))
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=10)
        finally:
            if p.poll() is None: p.kill(); p.wait()
            p.stdout.close(); p.stderr.close()
        eq_(p.returncode, -signal.SIGKILL)
        st = load_checkpoint(ck)  # the last complete checkpoint, whole (its checksum holds)
        eq_(st['format'], 'miniai-fit')
        eq_(st['model']['weight'].shape, (4096, 2048))
        assert st['pos']['n_updates'] >= 1
        others = [f.name for f in tmp_path.iterdir() if f.name != 'ck.pt']
        assert all(_TMP_RE.match(n) for n in others), others  # only atomic_write's own hidden temporary files
        torn += len(others)
        removed = clean_stale_tmp(tmp_path, older_than=0)  # which the next write's clean-up recognises and removes
        eq_(sorted(f.name for f in removed), sorted(others))
        eq_([f.name for f in tmp_path.iterdir()], ['ck.pt'])
    assert torn >= 1  # at least one kill landed in the middle of a write

CTRL_C_JOB = '''
import sys, time, torch, torch.nn.functional as F
from functools import partial
from torch import nn, optim
from miniai.learner import TrainLearner, Callback, MetricsCB
from miniai.checkpoint import CheckpointCB
from miniai.sched import BatchSchedCB, OneCycle, RecorderCB
sys.path.insert(0, TESTS_DIR)
from loaders import DLs, ShuffledDL

def make_learn(ck):
    torch.manual_seed(0)
    x = torch.randn(320, 8); y = (x[:, 0] > 0).long()
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.Dropout(0.2), nn.ReLU(), nn.Linear(16, 2))
    mcb = MetricsCB(); mcb._log = lambda row: None
    learn = TrainLearner(model, DLs(ShuffledDL(x, y, 32), ShuffledDL(x[:64], y[:64], 32)), F.cross_entropy, lr=0.05,
                         opt_func=optim.AdamW, cbs=[mcb, RecorderCB(), BatchSchedCB(partial(OneCycle, max_lr=0.05)), CheckpointCB(ck)])
    learn.mcb,learn.rec = mcb,learn.cbs[1]
    return learn

class Slow(Callback):
    def after_batch(self, learn):
        if learn.training and learn.epoch == 0 and learn.iter == 0: print('started', flush=True)
        time.sleep(0.03)

if __name__ == '__main__':
    torch.set_num_threads(1)
    make_learn(sys.argv[1]).fit(3, cbs=Slow())
    print('finished', flush=True)
'''

@pytest.mark.skipif(os.name != 'posix', reason='SIGINT to a subprocess is POSIX')
def test_real_ctrl_c_checkpoints_and_resumes_exactly(tmp_path, one_thread):
    job = tmp_path/'job.py'; job.write_text(CTRL_C_JOB.replace('TESTS_DIR', repr(str(Path(__file__).parent))))
    ck = tmp_path/'ck.pt'
    p = subprocess.Popen([sys.executable, str(job), str(ck)], cwd=tmp_path, env=_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        assert line.strip() == 'started', p.stderr.read()
        time.sleep(0.15)
        p.send_signal(signal.SIGINT)
        out,err = p.communicate(timeout=30)
    finally:
        if p.poll() is None: p.kill(); p.communicate()
    assert p.returncode != 0 and 'finished' not in out
    assert 'KeyboardInterrupt' in err, err
    assert str(ck) in err and 'resume=' in err, err
    st = load_checkpoint(ck)
    assert 0 < st['pos']['n_updates'] < 30 and not st['pos']['mid_batch']
    spec = importlib.util.spec_from_file_location('ctrl_c_job', job)
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    ref = mod.make_learn(tmp_path/'ref.pt'); ref.fit(3)
    res = mod.make_learn(ck); res.fit(3, resume=ck)
    same(result(res), result(ref))

# ---------------------------------------------------------------------------------------------------- 5. NaN guard
class Explode(Callback):
    "Makes the loss `val` at (epoch 1, batch 3) of the training or the validation pass; keeps the files' bytes then."
    order = TerminateOnNaNCB.order - 1
    def __init__(self, val, training, files=()): self.val,self.training,self.files,self.before = val,training,files,None
    def after_loss(self, learn):
        if (learn.epoch, learn.iter, learn.training) == (1, 3, self.training):
            self.before = {f: f.read_bytes() for f in self.files}
            learn.loss = learn.loss * self.val

@pytest.mark.parametrize('val', [float('nan'), float('inf')], ids=['nan', 'inf'])
@pytest.mark.parametrize('training', [True, False], ids=['train', 'valid'])
def test_terminate_on_nan(tmp_path, val, training):
    ck,best = tmp_path/'ck.pt',tmp_path/'best.pt'
    ex = Explode(val, training, (ck, best))
    b = reg_batches(6)
    learn = TrainLearner(nn.Linear(5, 2), DLs(b, b[:4]), F.mse_loss, lr=0.05,
                         cbs=[quiet_metrics(), TerminateOnNaNCB(), ex, SaveBestCB(path=best),
                              CheckpointCB(ck, every_updates=1, verbose=False)])
    pass_ = 'training' if training else 'validation'
    with pytest.raises(NonFiniteLossError, match=rf"loss is {val} at epoch 2, batch 4 \({pass_} pass\)"): learn.fit(3)
    assert ex.before is not None
    eq_(ck.read_bytes(), ex.before[ck])  # the last good checkpoint stays
    eq_(best.read_bytes(), ex.before[best])  # and the best model's file
    st = load_checkpoint(ck)
    assert all(torch.isfinite(v).all() for v in st['model'].values())
    assert isinstance(NonFiniteLossError('x'), FloatingPointError)

# ---------------------------------------------------------------------------------------------------- 6. early stopping / best
class FakeCol(Callback):
    "Overwrites column `col` of each epoch's metrics row with `seq[epoch]`."
    order = MetricsCB.order + 1
    def __init__(self, col, seq): self.col,self.seq = col,seq
    def after_epoch(self, learn):
        if not learn.training: learn.metrics.history[-1][self.col] = self.seq[learn.epoch]

class WeightsAtEpochEnd(Callback):
    order = 200
    def before_fit(self, learn): self.w = getattr(self, 'w', {})
    def after_epoch(self, learn):
        if not learn.training: self.w[learn.epoch] = {k:v.clone() for k,v in learn.model.state_dict().items()}

def small_class_learn(*cbs):
    torch.manual_seed(0)
    return TrainLearner(nn.Linear(8, 2), class_dls(128, 32), F.cross_entropy, lr=0.1,
                        cbs=[quiet_metrics(accuracy=MulticlassAccuracy())] + list(cbs))

NAN = float('nan')
@pytest.mark.parametrize('col,mode,min_delta,patience,seq,stopped,best_epoch', [
    ('valid_loss', 'auto', 0., 2, [3., 2., 2.5, 2.2, 1., 1.], 3, 1),
    ('valid_loss', 'min', 0., 2, [3., 2., 2.5, 2.2, 1., 1.], 3, 1),
    ('valid_loss', 'max', 0., 2, [3., 2., 2.5, 2.2, 1., 1.], 2, 0),
    ('valid_loss', 'min', 0., 1, [3., 2., 2.5, 2.2, 1., 1.], 2, 1),
    ('accuracy', 'auto', 0., 2, [.5, .7, .6, .65, .9, .9], 3, 1),
    ('accuracy', 'max', 0., 2, [.5, .7, .6, .65, .9, .9], 3, 1),
    ('accuracy', 'min', 0., 2, [.5, .7, .6, .65, .9, .9], 2, 0),
    ('valid_loss', 'min', 0.1, 2, [1., .95, .91, .5, .4, .3], 2, 0),
    ('valid_loss', 'min', 0., 2, [1., .95, .91, .5, .4, .3], None, 5),
    ('valid_loss', 'min', 0., 2, [1., NAN, NAN, .5, .4, .3], 2, 0),
])
def test_early_stopping(col, mode, min_delta, patience, seq, stopped, best_epoch):
    es = EarlyStoppingCB(col, patience=patience, min_delta=min_delta, mode=mode)
    learn = small_class_learn(FakeCol(col, seq), es)
    learn.fit(len(seq))
    eq_((es.stopped_epoch, es.best_epoch, es.best), (stopped, best_epoch, seq[best_epoch]))
    eq_(len(learn.metrics.history), len(seq) if stopped is None else stopped + 1)

@pytest.mark.parametrize('col,mode,seq,best_epoch', [('valid_loss', 'auto', [3., 2., 2.5, 1.5, 1.8], 3),
                                                     ('accuracy', 'auto', [.5, .7, .6, .65, .9], 4),
                                                     ('accuracy', 'min', [.5, .7, .4, .65, .9], 2)])
@pytest.mark.parametrize('load_best', [True, False])
def test_save_best(tmp_path, col, mode, seq, best_epoch, load_best):
    best,we = tmp_path/'best.pt',WeightsAtEpochEnd()
    sb = SaveBestCB(col, path=best, mode=mode, load_best=load_best)
    learn = small_class_learn(FakeCol(col, seq), sb, we)
    learn.fit(len(seq))
    eq_((sb.best_epoch, sb.best), (best_epoch, seq[best_epoch]))
    saved = load_state(best)[1]['model']
    for k,v in we.w[best_epoch].items(): assert torch.equal(saved[k], v), k
    final = we.w[len(seq) - 1] if not load_best else we.w[best_epoch]
    for k,v in learn.model.state_dict().items(): assert torch.equal(v, final[k]), k

@pytest.mark.parametrize('make', [lambda d: EarlyStoppingCB('valid_acc'), lambda d: SaveBestCB('valid_acc', path=d/'never.pt')])
def test_monitor_unknown_column(tmp_path, make):
    log = HookLog()
    learn = small_class_learn(make(tmp_path), log)
    with pytest.raises(ValueError, match=r"monitor='valid_acc'.*\['train_loss', 'valid_loss', 'accuracy'\]"): learn.fit(1)
    assert 'before_batch' not in log.log
    assert not (tmp_path/'never.pt').exists()

@pytest.mark.parametrize('kw,match', [(dict(patience=0), 'patience='), (dict(patience=1.5), 'patience='),
                                      (dict(patience=True), 'patience='), (dict(patience=-2), 'patience='),
                                      (dict(mode='bigger'), 'mode='), (dict(mode=None), 'mode='),
                                      (dict(min_delta=-0.1), 'min_delta='), (dict(min_delta=NAN), 'min_delta='),
                                      (dict(min_delta=float('inf')), 'min_delta='), (dict(min_delta=True), 'min_delta='),
                                      (dict(monitor=3), 'monitor=')])
def test_monitor_bad_args(kw, match):
    with pytest.raises(ValueError, match=match): EarlyStoppingCB(**kw)
    if 'patience' not in kw:
        with pytest.raises(ValueError, match=match): SaveBestCB(**kw)

SEQ_A,SEQ_B = [2., 3., 3.5, 2.2, 1., 1., 1.],[3., 2., 2.5, 2.2, 1., 1., 1.]
@pytest.mark.parametrize('seq,stop,stopped', [(SEQ_A, ('after_batch', (1, True, 1)), 2),   # in epoch 1: best from epoch 0
                                              (SEQ_B, ('after_batch', (3, True, 1)), 3),   # in epoch 3: wait 1
                                              (SEQ_B, ('after_batch', (2, False, 0)), 3),  # in a validation pass
                                              (SEQ_B, ('after_epoch', (2, False, 1)), 3)], # at an epoch's end
                         ids=['epoch1', 'epoch3', 'in_valid', 'epoch_end'])
def test_early_stopping_state_survives_resume(tmp_path, one_thread, seq, stop, stopped):
    def learn_(): return small_class_learn(FakeCol('valid_loss', seq), SaveBestCB(path=tmp_path/'best.pt'),
                                           EarlyStoppingCB(patience=2), CheckpointCB(tmp_path/'ck.pt', verbose=False))
    ref = learn_(); ref.fit(len(seq))
    es_ref,sb_ref = ref.cbs[-2],ref.cbs[-3]
    eq_(es_ref.stopped_epoch, stopped)
    w_ref = {k:v.clone() for k,v in ref.model.state_dict().items()}
    learn = learn_()
    learn.fit(len(seq), cbs=StopAt(*stop, CancelFitException, order=300))  # after every other callback
    eq_(learn.cbs[-2].stopped_epoch, None)
    learn = learn_()
    learn.fit(len(seq), resume=tmp_path/'ck.pt')
    es,sb = learn.cbs[-2],learn.cbs[-3]
    eq_((es.stopped_epoch, es.best, es.best_epoch, es.wait), (es_ref.stopped_epoch, es_ref.best, es_ref.best_epoch, es_ref.wait))
    eq_((sb.best, sb.best_epoch), (sb_ref.best, sb_ref.best_epoch))
    eq_(no_time(learn.metrics.history), no_time(ref.metrics.history))
    for k,v in learn.model.state_dict().items(): assert torch.equal(v, w_ref[k]), k

# ---------------------------------------------------------------------------------------------------- 7. save/load/predict
def _bn_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.Dropout(0.3), nn.ReLU(), nn.Linear(16, 2))

@pytest.mark.parametrize('with_opt', [False, True])
def test_save_load_roundtrip(tmp_path, with_opt):
    learn = TrainLearner(_bn_model(0), class_dls(), F.cross_entropy, lr=0.01, opt_func=optim.AdamW)
    learn.fit(1)
    p = tmp_path/'m.pt'
    learn.save(p, with_opt=with_opt)
    other = TrainLearner(_bn_model(1), class_dls(), F.cross_entropy, lr=0.01, opt_func=optim.AdamW)
    assert not torch.equal(other.model[0].weight, learn.model[0].weight)
    assert other.load(p, with_opt=with_opt) is other
    for (k,v),(k2,v2) in zip(learn.model.state_dict().items(), other.model.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k
    if with_opt:
        a,b = learn.opt.state_dict(),other.opt.state_dict()
        assert isinstance(other.opt, optim.AdamW) and a['state']
        eq_(a['param_groups'], b['param_groups'])
        for i,st in a['state'].items():
            for k,v in st.items(): assert torch.equal(torch.as_tensor(v), torch.as_tensor(b['state'][i][k])), k
    else:
        with pytest.raises(ValueError, match='with_opt'): other.load(p, with_opt=True)

def test_save_with_opt_before_fit(tmp_path):
    with pytest.raises(ValueError, match='with_opt'): TrainLearner(_bn_model(), class_dls()).save(tmp_path/'m.pt', with_opt=True)
    assert not (tmp_path/'m.pt').exists()

def test_load_not_a_save_file_dict(tmp_path):
    p = tmp_path/'x.pt'; torch.save({'weights': torch.zeros(2)}, p)
    with pytest.raises(ValueError, match='not a file written by Learner.save'): TrainLearner(_bn_model(), class_dls()).load(p)

def test_load_not_a_save_file_garbage(tmp_path):
    p = tmp_path/'x.pt'; p.write_text('this is not a model file')
    with pytest.raises(ValueError, match='Learner.save'): TrainLearner(_bn_model(), class_dls()).load(p)

def test_load_a_fit_checkpoint_is_clear(tmp_path):
    ck = tmp_path/'ck.pt'
    learn = TrainLearner(nn.Linear(8, 2), class_dls(), F.cross_entropy, cbs=[CheckpointCB(ck, verbose=False)])
    learn.fit(1)
    with pytest.raises(ValueError, match='Learner.save'): learn.load(ck)

@pytest.mark.parametrize('training', [True, False])
def test_get_preds_and_predict_batch(training):
    m = _bn_model()
    learn = TrainLearner(m, class_dls(), F.cross_entropy, lr=0.1)
    learn.fit(1)
    x,y = class_data(96, seed=3)
    dl = [(x[i:i+32], y[i:i+32]) for i in range(0, 96, 32)]
    m.train(training)
    preds,targs = learn.get_preds(dl)
    eq_(m.training, training)
    m.eval()
    with torch.no_grad(): want = m(x)
    m.train(training)
    assert torch.equal(targs, y)
    torch.testing.assert_close(preds, want, rtol=1e-6, atol=1e-6)
    assert not preds.requires_grad
    pb = learn.predict_batch(x[:5])
    eq_(m.training, training)
    torch.testing.assert_close(pb, want[:5], rtol=1e-6, atol=1e-6)
    assert not pb.requires_grad
    p2,t2 = learn.get_preds([b[0] for b in dl])  # bare inputs: no targets
    torch.testing.assert_close(p2, want, rtol=1e-6, atol=1e-6); assert t2 is None
    p3,t3 = learn.get_preds()  # default: dls.valid
    vx = torch.cat([b[0] for b in learn.dls.valid]); vy = torch.cat([b[1] for b in learn.dls.valid])
    m.eval()
    with torch.no_grad(): torch.testing.assert_close(p3, m(vx), rtol=1e-6, atol=1e-6)
    assert torch.equal(t3, vy)

def test_predict_on_train_learner_points_to_predict_batch():
    learn = TrainLearner(_bn_model(), class_dls(), F.cross_entropy)
    with pytest.raises(TypeError, match='predict_batch') as e: learn.predict(torch.randn(4, 8))
    assert 'get_preds' in str(e.value)

@pytest.mark.parametrize('at', [(0, True, 9), (1, False, 1)], ids=['train_pass_end', 'valid_pass_end'])
@pytest.mark.parametrize('order', [-1, 300])
def test_stop_in_after_epoch_of_any_order_resumes_exactly(tmp_path, one_thread, at, order):
    "A stop raised by an early callback in after_epoch waits until every callback ran after_epoch (none is skipped)."
    ck = tmp_path/'ck.pt'
    learn = make_learn(CheckpointCB(ck, verbose=False), sched='cosine')
    with pytest.raises(KeyboardInterrupt): learn.fit(3, cbs=StopAt('after_epoch', at, KeyboardInterrupt, order=order))
    learn = make_learn(CheckpointCB(ck, verbose=False), sched='cosine')
    learn.fit(3, resume=ck)
    same(result(learn), reference(sched='cosine'))

def test_early_stopping_is_not_reported_as_an_interruption(tmp_path, capsys):
    class Flat(Callback):
        order = MetricsCB.order + 1
        def after_epoch(self, learn):
            if not learn.training: learn.mcb.history[-1]['valid_loss'] = 1.
    learn = make_learn(Flat(), CheckpointCB(tmp_path/'ck.pt'), EarlyStoppingCB(patience=1))
    learn.fit(5)
    assert learn.stopped_early
    assert 'interrupted' not in capsys.readouterr().err

def test_predict_with_an_argument_on_a_plain_learner_is_clear():
    learn = Learner(nn.Linear(8, 2), class_dls(), F.cross_entropy, cbs=[TrainCB()])
    with pytest.raises(TypeError, match='predict_batch'): learn.predict(torch.zeros(1, 8))
    with pytest.raises(TypeError, match='takes no arguments'): learn.step(1)

def test_checkpoint_not_written_with_non_finite_weights(tmp_path, capsys):
    "A model whose weights went to inf/nan is never written over the last good checkpoint."
    ck = tmp_path/'ck.pt'
    class Poison(Callback):
        order = CheckpointCB.order - 1
        def cleanup_batch(self, learn):
            if learn.training and learn.epoch == 1 and learn.iter == 2:
                with torch.no_grad(): learn.model[0].weight.fill_(float('nan'))
    learn = make_learn(Poison(), CheckpointCB(ck, every_updates=1))
    learn.fit(2)
    st = load_checkpoint(ck)
    assert st['pos']['n_updates'] == 12 and all(torch.isfinite(v).all() for v in st['model'].values() if v.is_floating_point())
    assert 'checkpoint not written at update 13' in capsys.readouterr().err
