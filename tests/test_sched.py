"Tests for miniai.sched: torch equality, schedule properties, resuming, length filling, callbacks, recorder, previews."
import math, re, warnings
from copy import deepcopy
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch import nn, optim
from torch.optim import lr_scheduler
from hypothesis import given, settings, assume, strategies as st
from matplotlib.figure import Figure

from miniai.learner import TrainLearner, Callback, CancelFitException, CancelBatchException
from miniai.schedbase import get_field
from miniai.precision import MixedPrecisionCB
from miniai.sched import (CosineAnnealing, OneCycle, one_cycle_ends, anneal_cos, BatchSchedCB, EpochSchedCB,
                          RecorderCB, rec_lr, rec_mom, rec_wd, rec_loss, fill_length, make_sched, is_annealer,
                          sched_values, plot_sched, LENGTH_PARAMS)

warnings.filterwarnings('ignore', message='Detected call of')  # torch: sched.step() with no optimizer.step() (dummy loops)


# ---------------------------------------------------------------- helpers
def dummy_opt(lrs=(1e-2,), opt_func=optim.AdamW, **kw):
    return opt_func([{'params': [nn.Parameter(torch.zeros(1))], 'lr': lr} for lr in lrs], **kw)

def trace(opt, sched, n):
    "lr and momentum of every group for each of `n` updates (the values each update trains with)."
    lrs,moms = [],[]
    for _ in range(n):
        lrs.append([pg['lr'] for pg in opt.param_groups])
        moms.append([get_field(pg, 'mom') for pg in opt.param_groups])
        opt.step(); sched.step()
    return lrs,moms

def assert_rel(a, b, rel=1e-12):
    "Nested lists `a` and `b` equal to a relative `rel` (elementwise)."
    for ra,rb in zip(a, b, strict=True):
        for x,y in zip(ra, rb, strict=True): assert abs(x - y) <= rel * max(abs(x), abs(y)), (x, y)

def torch_pair(T, p, d, f, M, b, anneal, three, lrs, opt_func=optim.AdamW, **kw):
    "Traces of torch's OneCycleLR and ours with the same settings (torch's final_div_factor f == our div_final d*f)."
    m = [3 * lr for lr in lrs]
    o1,o2 = dummy_opt(lrs, opt_func, **kw),dummy_opt(lrs, opt_func, **kw)
    s1 = lr_scheduler.OneCycleLR(o1, max_lr=m, total_steps=T, pct_start=p, div_factor=d, final_div_factor=f,
                                 base_momentum=b, max_momentum=M, anneal_strategy=anneal, three_phase=three)
    t = trace(o1, s1, T)
    s2 = OneCycle(o2, T, max_lr=m, pct_start=p, div=d, div_final=d * f, moms=(M, b, M), anneal=anneal, three_phase=three)
    return t,trace(o2, s2, T)


# ---------------------------------------------------------------- equality with torch
@pytest.mark.parametrize('three', [False, True])
@pytest.mark.parametrize('anneal', ['cos', 'linear'])
@pytest.mark.parametrize('T', [1, 2, 3, 7, 50, 333])
@pytest.mark.parametrize('p', [0.1, 0.25, 0.3, 0.45])
@pytest.mark.parametrize('ng', [1, 3])
def test_onecycle_equals_torch_adamw(three, anneal, T, p, ng):
    try: (tl,tm),(ol,om) = torch_pair(T, p, 25., 1e4, 0.95, 0.85, anneal, three, [1e-2 * (i + 1) for i in range(ng)])
    except ZeroDivisionError: pytest.skip('torch divides by zero here (pct_start*T == 1)')
    assert_rel(ol, tl); assert_rel(om, tm)

@pytest.mark.parametrize('three', [False, True])
@pytest.mark.parametrize('anneal', ['cos', 'linear'])
def test_onecycle_equals_torch_sgd(three, anneal):
    (tl,tm),(ol,om) = torch_pair(120, 0.3, 10., 100., 0.9, 0.8, anneal, three, [1e-2, 1e-3], optim.SGD, momentum=0.9)
    assert_rel(ol, tl); assert_rel(om, tm)

@settings(max_examples=150, deadline=None)
@given(T=st.integers(1, 400), p=st.floats(0.01, 0.99), d=st.floats(1.5, 100.), f=st.floats(1., 1e5),
       M=st.floats(0.5, 0.99), b=st.floats(0.5, 0.99), anneal=st.sampled_from(['cos', 'linear']),
       three=st.booleans(), ng=st.integers(1, 4))
def test_onecycle_equals_torch_hypothesis(T, p, d, f, M, b, anneal, three, ng):
    assume(not three or p <= 0.5)
    try: (tl,tm),(ol,om) = torch_pair(T, p, d, f, M, b, anneal, three, [1e-2 / (i + 1) for i in range(ng)])
    except ZeroDivisionError: assume(False)
    assert_rel(ol, tl); assert_rel(om, tm)

@pytest.mark.parametrize('T', [1, 2, 10, 100, 1000])
@pytest.mark.parametrize('eta_min', [0., 1e-4])
def test_cosine_equals_torch(T, eta_min):
    lrs = [1e-2, 3e-3, 1e-1]
    o1,o2 = dummy_opt(lrs),dummy_opt(lrs)
    t,_ = trace(o1, lr_scheduler.CosineAnnealingLR(o1, T, eta_min=eta_min), T + 1)
    o,_ = trace(o2, CosineAnnealing(o2, T, eta_min=eta_min), T + 1)
    assert_rel(o[:T], t[:T])
    if eta_min: assert_rel(o[T:], t[T:])
    else: assert o[T] == [0.] * 3 and all(abs(x) < 1e-17 for x in t[T])  # torch's recursion leaves ~1e-19

def test_construction_sets_step0():
    opt = dummy_opt((1e-2, 1e-3))
    OneCycle(opt, 100)
    assert [pg['lr'] for pg in opt.param_groups] == pytest.approx([1e-2 / 25, 1e-3 / 25], rel=1e-12)
    assert [pg['betas'] for pg in opt.param_groups] == [(0.95, 0.999)] * 2
    opt = dummy_opt((1e-2, 1e-3))
    CosineAnnealing(opt, 10)
    assert [pg['lr'] for pg in opt.param_groups] == [1e-2, 1e-3]


# ---------------------------------------------------------------- properties
def _slope(start, end, span, anneal):
    "Largest change per step inside a phase."
    return abs(end - start) / span * (math.pi / 2 if anneal == 'cos' else 1.)

@settings(max_examples=150, deadline=None)
@given(T=st.integers(8, 600), p=st.floats(0.05, 0.95), div=st.floats(2., 100.), div_final=st.floats(1e2, 1e6),
       moms=st.tuples(st.floats(0.8, 0.99), st.floats(0.5, 0.79)), anneal=st.sampled_from(['cos', 'linear']),
       three=st.booleans(), max_lr=st.floats(1e-4, 1.))
def test_onecycle_properties(T, p, div, div_final, moms, anneal, three, max_lr):
    assume(not three or p <= 0.5)
    ends = one_cycle_ends(T, p, three)
    spans = [e - s for s,e in zip([0.] + ends[:-1], ends)]
    assume(min(spans) >= 1)  # every phase has at least one step of its own
    M,b = moms
    opt = dummy_opt()
    s = OneCycle(opt, T, max_lr=max_lr, pct_start=p, div=div, div_final=div_final, moms=(M, b, M), anneal=anneal, three_phase=three)
    lrs,ms = (list(zip(*v))[0] for v in trace(opt, s, T))
    lo,fin = max_lr / div,max_lr / div_final
    # torch's arithmetic, kept bit for bit, is exact to rounding of the phase's scale (the linear annealer's
    # `start + (end - start)*1` is `end` only to within an ulp of `start`): tolerances are relative to max_lr
    tol,mtol = 1e-15 * max_lr,1e-15
    # inside [min, max]
    assert all(min(lo, fin) - tol <= v <= max_lr + tol for v in lrs)
    assert all(b - mtol <= m <= M + mtol for m in ms)
    # first and last values
    assert abs(lrs[0] - lo) <= tol and abs(ms[0] - M) <= mtol
    assert abs(lrs[-1] - fin) <= tol and abs(ms[-1] - M) <= mtol
    if anneal == 'cos': assert lrs[-1] == pytest.approx(fin, rel=1e-12)
    # each phase monotone, and no step moves more than the steepest phase it touches allows
    lr_pts = [(lo, max_lr), (max_lr, lo), (lo, fin)] if three else [(lo, max_lr), (max_lr, fin)]
    m_pts = [(M, b), (b, M), (M, M)] if three else [(M, b), (b, M)]
    phase = [next(i for i,e in enumerate(ends) if n <= e) for n in range(T)]
    for n in range(T - 1):
        i,j = phase[n],phase[n + 1]
        for vals,pts in ((lrs, lr_pts), (ms, m_pts)):
            d = vals[n + 1] - vals[n]
            if i == j:  # same phase: moves toward the phase's end value
                st_,en = pts[i]
                assert d * (en - st_) >= -tol * abs(en - st_)
            bound = max(_slope(*pts[k], spans[k], anneal) for k in (i, j))
            assert abs(d) <= bound * (1 + 1e-9) + 1e-15

def test_past_the_end_holds():
    for three in (False, True):
        opt = dummy_opt((1e-2, 1e-3), optim.SGD, momentum=0.9)
        s = OneCycle(opt, 20, three_phase=three)
        lrs,ms = trace(opt, s, 60)
        assert lrs[19:] == [lrs[19]] * 41 and ms[19:] == [[0.95, 0.95]] * 41
        assert lrs[19] == pytest.approx([1e-2 / 1e5, 1e-3 / 1e5], rel=1e-12)
    opt = dummy_opt()
    lrs,_ = trace(opt, CosineAnnealing(opt, 10, eta_min=1e-5), 30)
    assert lrs[10:] == [[1e-5]] * 20

@pytest.mark.parametrize('T', [1, 2, 3, 4])
@pytest.mark.parametrize('p', [0.25, 0.5])
def test_tiny_schedules_no_division_by_zero(T, p):
    opt = dummy_opt()
    lrs,_ = trace(opt, OneCycle(opt, T, pct_start=p, max_lr=1e-2), T + 3)
    assert all(1e-2 / 1e5 * (1 - 1e-12) <= v[0] <= 1e-2 for v in lrs)
    assert lrs[T - 1][0] == pytest.approx(1e-2 / 1e5)

def test_moms_none_and_fields():
    opt = dummy_opt(opt_func=optim.SGD)  # momentum 0 is fine when momentum is not cycled
    s = OneCycle(opt, 10, moms=None)
    assert s.fields == ('lr',)
    _,ms = trace(opt, s, 10)
    assert ms == [[0]] * 10
    assert OneCycle(dummy_opt(), 10).fields == ('lr', 'mom')
    opt = dummy_opt()
    s = OneCycle(opt, 10)
    for _ in range(10): s.step()
    assert opt.param_groups[0]['betas'][1] == 0.999  # beta2 untouched
    assert s.get_last_lr() == [opt.param_groups[0]['lr']]


# ---------------------------------------------------------------- state dict
@pytest.mark.parametrize('opt_first', [True, False])
@pytest.mark.parametrize('cls', [partial(OneCycle, T_max=30, max_lr=[1e-2, 2e-3]), partial(CosineAnnealing, T_max=30)])
def test_state_dict_resume(opt_first, cls):
    o_full = dummy_opt((1e-2, 1e-3)); full = trace(o_full, cls(o_full), 30)
    o_a = dummy_opt((1e-2, 1e-3)); s_a = cls(o_a); first = trace(o_a, s_a, 12)
    o_b = dummy_opt((5e-1, 5e-1))  # a different lr at construction: the saved state wins
    if opt_first:
        o_b.load_state_dict(o_a.state_dict()); s_b = cls(o_b); s_b.load_state_dict(s_a.state_dict())
    else:
        s_b = cls(o_b); s_b.load_state_dict(s_a.state_dict()); o_b.load_state_dict(o_a.state_dict())
    rest = trace(o_b, s_b, 18)
    assert first[0] + rest[0] == full[0] and first[1] + rest[1] == full[1]


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize('kw,msg', [
    (dict(T_max=None), 'T_max=None'), (dict(T_max=0), 'T_max=0'), (dict(T_max=2.5), 'T_max=2.5'),
    (dict(T_max=True), 'T_max=True'), (dict(pct_start=0.), 'pct_start=0.0'), (dict(pct_start=1.), 'pct_start=1.0'),
    (dict(pct_start=0.6, three_phase=True), 'pct_start=0.6'), (dict(div=0), 'div=0'), (dict(div_final=-1.), 'div_final=-1.0'),
    (dict(anneal='exp'), "anneal='exp'"), (dict(moms=(0.9, 0.8)), 'moms=(0.9, 0.8)'), (dict(moms=(0.9, 0.8, 1.)), 'moms[2]=1.0'),
    (dict(moms=(0.9, -0.1, 0.9)), 'moms[1]=-0.1'), (dict(max_lr=-1e-2), 'max_lr=-0.01'), (dict(max_lr=[1e-2]), 'max_lr=[0.01]'),
    (dict(max_lr=float('nan')), 'max_lr=nan'), (dict(pct_start='0.3'), "pct_start='0.3'"),
    (dict(max_lr=[1e-2, -1.]), 'max_lr[1]=-1.0'), (dict(T_max=10.), 'T_max=10.0'), (dict(three_phase='abc'), "three_phase='abc'"),
    (dict(three_phase=None), 'three_phase=None')])
def test_onecycle_validation(kw, msg):
    kw = {'T_max': 10, **kw}
    with pytest.raises(ValueError, match=None) as e: OneCycle(dummy_opt((1e-2, 1e-3)), **kw)
    assert msg in str(e.value), str(e.value)

def test_onecycle_validation_optimizers():
    with pytest.raises(ValueError, match='momentum=0') as e: OneCycle(dummy_opt(opt_func=optim.SGD), 10)
    assert '0.95' in str(e.value)  # tells what torch would have done
    with pytest.raises(ValueError, match="neither 'betas'"): OneCycle(dummy_opt(opt_func=optim.Adagrad), 10)
    OneCycle(dummy_opt(opt_func=optim.Adagrad), 10, moms=None)
    OneCycle(dummy_opt(opt_func=optim.RMSprop, momentum=0.9), 10)
    opt = dummy_opt((1e-2,)); opt.param_groups[0]['lr'] = -1.
    with pytest.raises(ValueError, match='param group 0 lr=-1.0'): OneCycle(opt, 10)
    with pytest.raises(TypeError, match='OneCycle needs a torch optimizer, got Linear'): OneCycle(nn.Linear(2, 1), 10)

def test_max_lr_zero_is_one_rule():
    "Issue 8: a peak of 0 is accepted (the group stays at 0) by OneCycle as by every other scheduler; negative refused."
    opt = dummy_opt((1e-2, 1e-3)); s = OneCycle(opt, 10, max_lr=[0., 1e-2])
    lrs,_ = trace(opt, s, 12)
    assert all(l[0] == 0. for l in lrs) and 9e-3 < max(l[1] for l in lrs) <= 1e-2
    opt = dummy_opt((0., 1e-3)); lrs,_ = trace(opt, OneCycle(opt, 10), 12)
    assert all(l[0] == 0. for l in lrs)
    opt = dummy_opt((0.,)); lrs,_ = trace(opt, CosineAnnealing(opt, 10), 12)
    assert all(l[0] == 0. for l in lrs)

@pytest.mark.parametrize('kw,msg', [(dict(T_max=None), 'T_max=None'), (dict(T_max=-3), 'T_max=-3'),
                                    (dict(eta_min=-1e-3), 'eta_min=-0.001')])
def test_cosine_validation(kw, msg):
    with pytest.raises(ValueError) as e: CosineAnnealing(dummy_opt(), **{'T_max': 10, **kw})
    assert msg in str(e.value)


# ---------------------------------------------------------------- length filling
def test_fill_length_names():
    from pytorch_optimizer import CosineScheduler, LinearScheduler, PolyScheduler, REXScheduler
    from pytorch_accelerated.schedulers import CosineLrScheduler
    assert set(LENGTH_PARAMS) >= {'T_max', 'total_steps', 't_max', 'total_num_epochs', 'num_update_steps_per_epoch'}
    assert fill_length(OneCycle, 3, 10).keywords == {'T_max': 30}
    assert fill_length(partial(OneCycle, T_max=5), 3, 10).keywords == {'T_max': 5}
    assert fill_length(lr_scheduler.CosineAnnealingLR, 3, 1).keywords == {'T_max': 3}
    assert fill_length(partial(lr_scheduler.OneCycleLR, max_lr=1.), 3, 10).keywords['total_steps'] == 30
    assert 'total_steps' not in fill_length(partial(lr_scheduler.OneCycleLR, max_lr=1., epochs=3, steps_per_epoch=10), 3, 10).keywords
    for c in (CosineScheduler, LinearScheduler, PolyScheduler): assert fill_length(c, 3, 10).keywords == {'t_max': 30}
    assert fill_length(REXScheduler, 3, 10).keywords == {'total_steps': 30}
    kw = fill_length(CosineLrScheduler.create_scheduler_fn(num_warmup_epochs=1), 3, 10).keywords
    assert kw['total_num_epochs'] == 3 and kw['num_update_steps_per_epoch'] == 10 and kw['num_warmup_epochs'] == 1
    f = lambda opt: OneCycle(opt, 7)
    assert fill_length(f, 3, 10) is f

def test_fill_length_other_family_T_max():
    "A scheduler written elsewhere whose length is `T_max` is filled with no registration."
    class Lin(OneCycle.__mro__[1]):  # StatefulSchedulerBase
        closed_form = True
        def __init__(self, opt, T_max=None): self.T_max = T_max; super().__init__(opt)
        def get_updated_values(self, n): return [b * (1 - min(n, self.T_max) / self.T_max) for b in self.base_values]
    s,_ = make_sched(Lin, dummy_opt(), 4, 25)
    assert s.T_max == 100

def test_pyacc_placeholders_onecyclelr():
    from pytorch_accelerated import TrainerPlaceholderValues as P
    f = partial(lr_scheduler.OneCycleLR, max_lr=1., epochs=P.NUM_EPOCHS, steps_per_epoch=P.NUM_UPDATE_STEPS_PER_EPOCH)
    s,_ = make_sched(f, dummy_opt(), 3, 10)
    assert s.total_steps == 30


# ---------------------------------------------------------------- learner-based
class DLs:
    def __init__(self, train, valid): self.train,self.valid = train,valid

def tiny_dls(n_train=8, n_valid=3, bs=8, last_valid_bs=None):
    g = torch.Generator().manual_seed(0)
    def batches(n, last=None):
        out = []
        for i in range(n):
            b = last if (last and i == n - 1) else bs
            x = torch.randn(b, 4, generator=g); out.append((x, x.sum(1, keepdim=True)))
        return out
    return DLs(batches(n_train), batches(n_valid, last_valid_bs))

def tiny_learner(cbs=(), n_train=8, n_valid=3, seed=0, **kw):
    torch.manual_seed(seed)
    return TrainLearner(nn.Linear(4, 1), tiny_dls(n_train, n_valid, **kw), F.mse_loss, lr=1e-2, cbs=list(cbs), opt_func=optim.AdamW)

class StopAfter(Callback):
    "Cancels the fit after `k` optimizer updates (in after_step: the update has happened)."
    order = 5
    def __init__(self, k): self.k = k
    def after_step(self, learn):
        if learn.n_updates == self.k: raise CancelFitException()

class LrLog(Callback):
    "Logs the lr at every training and validation batch start."
    def __init__(self): self.train,self.valid = [],[]
    def before_batch(self, learn): (self.train if learn.training else self.valid).append(learn.opt.param_groups[0]['lr'])

@pytest.mark.parametrize('sched', [partial(OneCycle, max_lr=1e-2), partial(lr_scheduler.OneCycleLR, max_lr=1e-2),
                                   CosineAnnealing, partial(lr_scheduler.CosineAnnealingLR, eta_min=1e-4),
                                   partial(CosineAnnealing, eta_min=1e-4, chainable=True)])
@pytest.mark.parametrize('k', [1, 5, 8, 11])
def test_resume_mid_fit(sched, k):
    rec = RecorderCB()
    learn = tiny_learner([BatchSchedCB(sched), rec]); learn.fit(2)
    full_lr,full_mom = rec.recs['lr'],rec.recs['mom']
    assert len(full_lr) == 16
    cb = BatchSchedCB(sched)
    learn = tiny_learner([cb, rec]); learn.fit(2, cbs=[StopAfter(k)])
    assert rec.recs['lr'] == full_lr[:k] and cb.n == k and learn.n_updates == k
    sd = cb.state_dict()
    # a later fit, here only one epoch long: the saved length wins, the schedule carries on where it stopped
    cb2 = BatchSchedCB(sched, state=sd)
    learn.cbs.remove(cb)
    if 16 - k < 8:  # a fit longer than what the schedule has left is refused (it would run past the schedule's end)
        with pytest.raises(ValueError, match=f'{16 - k} steps left, and this fit would take 8'): learn.fit(1, cbs=[cb2])
        return
    learn.fit(1, cbs=[cb2])
    assert rec.recs['lr'] == full_lr[k:k + 8] and rec.recs['mom'] == full_mom[k:k + 8]
    # the fit after that starts afresh
    learn.fit(2, cbs=[cb2])
    assert rec.recs['lr'] == full_lr

def test_resume_with_load_state_dict_and_torch_sched():
    cb = BatchSchedCB(partial(OneCycle, max_lr=1e-2))
    rec = RecorderCB()
    learn = tiny_learner([cb, rec]); learn.fit(2)
    full = rec.recs['lr']
    learn.fit(2, cbs=[StopAfter(6)])
    sd = cb.state_dict()
    cb.load_state_dict(sd)
    with pytest.raises(ValueError, match='10 steps left, and this fit would take 16'): learn.fit(2)  # would run past the end
    learn.fit(1)  # 8 of the 10 steps left: the schedule carries on where it stopped
    assert rec.recs['lr'] == full[6:14]

class SkipOdd(Callback):
    "Marks the step of odd batches as skipped (as an AMP grad scaler would)."
    def after_backward(self, learn):
        if learn.iter % 2 == 1: learn.step_skipped = True

class CancelEvery3(Callback):
    def after_backward(self, learn):
        if learn.iter % 3 == 2: raise CancelBatchException()

@pytest.mark.parametrize('bad', [SkipOdd, CancelEvery3])
@pytest.mark.parametrize('order', [-1, 1])
def test_skipped_steps_advance_cancelled_do_not(bad, order):
    """A skipped step (the grad scaler's) takes its slot of the schedule, as torch's and fastai's do; a batch
    cancelled before its step does not. The recorder keeps the real updates, each with the value it used."""
    cb,rec,log = BatchSchedCB(partial(OneCycle, max_lr=1e-2)),RecorderCB(),LrLog()
    rec.order = order
    learn = tiny_learner([cb, rec, log, bad()], n_train=9); learn.fit(2)
    n = learn.n_updates
    assert n == (10 if bad is SkipOdd else 12)
    slots = 18 if bad is SkipOdd else 12  # batches that reached their optimizer step
    assert cb.n == slots and cb.sched.num_updates == slots and len(rec.recs['lr']) == n
    opt = dummy_opt(); ref = trace(opt, OneCycle(opt, 18, max_lr=1e-2), slots)
    real = [k for k in range(18) if k % 9 % 2 == 0] if bad is SkipOdd else range(12)  # slot of each real update
    assert rec.recs['lr'] == [ref[0][k][0] for k in real] and rec.recs['mom'] == [ref[1][k][0] for k in real]

@pytest.mark.parametrize('rec_order', [-5, 5])
def test_never_stepped_in_validation_and_recorder(rec_order, tmp_path):
    cb,log = BatchSchedCB(partial(OneCycle, max_lr=1e-2)),LrLog()
    rec = RecorderCB(lr=rec_lr, mom=rec_mom, wd=rec_wd, loss=rec_loss)
    rec.order = rec_order
    learn = tiny_learner([cb, rec, log]); learn.fit(3)
    assert cb.sched.num_updates == learn.n_updates == 24
    # each validation pass sees one lr: the one after the last update of its epoch
    assert log.valid == [log.train[8]] * 3 + [log.train[16]] * 3 + [cb.sched.get_last_lr()[0]] * 3
    assert rec.recs['lr'][0] == pytest.approx(1e-2 / 25) and rec.recs['lr'] == log.train
    assert len(rec.recs['loss']) == 24 and rec.recs['wd'] == [0.01] * 24
    assert rec.epochs == [0] * 8 + [1] * 8 + [2] * 8 and rec.epoch_starts == [0, 8, 16]
    fig = rec.plot(path=tmp_path / 'sub' / 'rec.png', log_lr=True)
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    assert (tmp_path / 'sub' / 'rec.png').stat().st_size > 1000
    assert fig.axes[0].get_yscale() == 'log'
    assert sum(1 for l in fig.axes[0].lines) == 1 + 2  # the curve and two epoch lines
    assert not list((tmp_path / 'sub').glob('.*tmp'))  # no temporary file left

def test_recorder_default_and_sgd():
    rec = RecorderCB()
    assert list(rec.fns) == ['lr', 'mom']
    torch.manual_seed(0)
    learn = TrainLearner(nn.Linear(4, 1), tiny_dls(), F.mse_loss, lr=1e-2,
                         cbs=[BatchSchedCB(partial(OneCycle, max_lr=1e-2)), rec], opt_func=partial(optim.SGD, momentum=0.9))
    learn.fit(1)
    assert rec.recs['mom'][0] == 0.95 and min(rec.recs['mom']) < 0.95
    with pytest.raises(TypeError, match='lr=3'): RecorderCB(lr=3)

def test_every_fit_restarts():
    cb = BatchSchedCB(partial(OneCycle, max_lr=1e-2))
    rec = RecorderCB()
    learn = tiny_learner([cb, rec])
    learn.fit(1); a = rec.recs['lr']; s1 = cb.sched
    learn.fit(1); assert rec.recs['lr'] == a and cb.sched is not s1 and cb.sched.optimizer is learn.opt

def test_batch_fill_lengths_in_fit():
    from pytorch_accelerated.schedulers import CosineLrScheduler
    for sched,attr,want in [(OneCycle, 'T_max', 24), (partial(lr_scheduler.OneCycleLR, max_lr=1e-2), 'total_steps', 24),
                            (lr_scheduler.CosineAnnealingLR, 'T_max', 24),
                            (CosineLrScheduler.create_scheduler_fn(num_warmup_epochs=1), 'total_iterations', 24)]:
        cb = BatchSchedCB(sched)
        tiny_learner([cb]).fit(3)
        assert getattr(cb.sched, attr) == want
    assert cb.sched.warmup_iterations == 8  # num_update_steps_per_epoch was filled with the batches per epoch
    for sched,attr in [(OneCycle, 'T_max'), (lr_scheduler.CosineAnnealingLR, 'T_max'),
                       (CosineLrScheduler.create_scheduler_fn(num_warmup_epochs=1), 'total_iterations')]:
        cb = EpochSchedCB(sched)
        tiny_learner([cb]).fit(3)
        assert getattr(cb.sched, attr) == 3
    assert cb.sched.warmup_iterations == 1

@pytest.mark.parametrize('ours,theirs', [(CosineAnnealing, lr_scheduler.CosineAnnealingLR),
                                         (partial(OneCycle, max_lr=1e-2, pct_start=0.3, div_final=25e4),
                                          partial(lr_scheduler.OneCycleLR, max_lr=1e-2))])
def test_epoch_sched(ours, theirs):
    res = []
    for s in (ours, theirs):
        cb,log = EpochSchedCB(s),LrLog()
        tiny_learner([cb, log]).fit(4)
        res.append(log.train)
        assert cb.n == 4
    assert res[0] == pytest.approx(res[1], rel=1e-12)
    assert len(set(res[0][:8])) == 1 and res[0][8] != res[0][7]  # constant inside an epoch

def test_plateau():
    class Plateau(lr_scheduler.ReduceLROnPlateau):
        def step(self, metrics): self.seen = getattr(self, 'seen', []) + [metrics]; super().step(metrics)
    cb = EpochSchedCB(partial(Plateau, patience=0))
    learn = tiny_learner([cb], last_valid_bs=3); learn.fit(2)
    with torch.no_grad():
        tot = sum(F.mse_loss(learn.model(x), y).item() * len(x) for x,y in learn.dls.valid)
    assert cb.sched.seen[-1] == pytest.approx(tot / (8 + 8 + 3), rel=1e-6)
    assert len(cb.sched.seen) == 2
    with pytest.raises(ValueError, match='EpochSchedCB'): tiny_learner([BatchSchedCB(Plateau)]).fit(1)
    with pytest.raises(ValueError, match='no validation pass'): tiny_learner([EpochSchedCB(Plateau)]).fit(2, valid=False)
    # caught at before_fit, before any training: even a one-epoch fit without validation raises
    with pytest.raises(ValueError, match='this fit has no validation pass'): tiny_learner([EpochSchedCB(Plateau)]).fit(1, valid=False)

def test_annealer():
    def f(pos): return 1e-2 * (1 - pos)
    assert is_annealer(f) and not is_annealer(OneCycle) and not is_annealer(partial(OneCycle, T_max=3))
    cb,log = BatchSchedCB(f),LrLog()
    tiny_learner([cb, log], n_train=4).fit(2)
    assert log.train == pytest.approx([1e-2 * (1 - i / 8) for i in range(8)])
    cb,log = EpochSchedCB(f),LrLog()
    tiny_learner([cb, log], n_train=2).fit(4)
    assert log.train == pytest.approx([1e-2 * (1 - i / 4) for i in range(4) for _ in range(2)])

def test_pyacc_stateless_gets_step_update():
    from pytorch_accelerated.schedulers.scheduler_base import SchedulerBase as PSB
    class Half(PSB):
        def get_updated_values(self, n): return [b * 0.5 ** n for b in self.base_lr_values]
    calls = []
    class Spy(Half):
        def step_update(self, n): calls.append(n); super().step_update(n)
    tiny_learner([BatchSchedCB(Spy)], n_train=3).fit(2)
    assert calls == [1, 2, 3, 4, 5, 6]


# ---------------------------------------------------------------- previews
def test_sched_values_and_plot_sched(tmp_path):
    v = sched_values(partial(OneCycle, max_lr=1e-2), n_steps=50)
    opt = dummy_opt(); lrs,ms = trace(opt, OneCycle(opt, 50, max_lr=1e-2), 50)
    assert v['lr'] == [[x[0] for x in lrs]] and v['mom'] == [[x[0] for x in ms]]
    v = sched_values(lr_scheduler.CosineAnnealingLR, n_steps=20, n_groups=2, lr=[1e-2, 1e-3])
    assert list(v) == ['lr'] and len(v['lr']) == 2 and v['lr'][1][0] == 1e-3  # momentum constant: not recorded
    v = sched_values(partial(lr_scheduler.OneCycleLR, max_lr=1e-2), n_steps=20, opt_func=partial(optim.SGD, momentum=0.9))
    assert list(v) == ['lr', 'mom']
    fig = plot_sched(partial(OneCycle, max_lr=1e-2), n_steps=100, n_groups=3, path=tmp_path / 'p.svg')
    assert isinstance(fig, Figure) and len(fig.axes) == 2 and len(fig.axes[0].lines) == 3
    assert (tmp_path / 'p.svg').read_text().lstrip().startswith('<?xml')
    assert len(plot_sched(lambda pos: 1 - pos, n_steps=10).axes) == 1
    with pytest.raises(ValueError, match='lr='): sched_values(OneCycle, n_groups=2, lr=[1e-2])

def test_length_given_as_none_is_filled():
    opt = torch.optim.AdamW(torch.nn.Linear(2, 1).parameters(), lr=1e-2)
    s = fill_length(partial(OneCycle, T_max=None, max_lr=1e-2), n_epochs=3, per_epoch=7)(opt)
    assert s.T_max == 21
    t = fill_length(partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=1e-2, total_steps=None), n_epochs=2, per_epoch=5)(opt)
    assert t.total_steps == 10


def test_state_resume_refuses_another_fit():
    "A callback's saved state is refused by a fit with other batches per epoch or another optimizer, naming the difference."
    cb = BatchSchedCB(partial(OneCycle, max_lr=1e-2))
    learn = tiny_learner([cb]); learn.fit(2, cbs=[StopAfter(3)])
    sd = cb.state_dict()
    learn.cbs.remove(cb)
    other = tiny_learner(n_train=5)  # 5 batches per epoch instead of 8
    with pytest.raises(ValueError, match='steps_per_epoch: 8 in the saved state, 5 in this fit'):
        other.fit(1, cbs=[BatchSchedCB(partial(OneCycle, max_lr=1e-2), state=sd)])
    learn.opt_func = partial(optim.SGD, momentum=0.9)
    with pytest.raises(ValueError, match="opt: 'AdamW' in the saved state, 'SGD' in this fit"):
        learn.fit(1, cbs=[BatchSchedCB(partial(OneCycle, max_lr=1e-2), state=sd)])

def test_annealer_state_resume_keeps_its_length():
    "A plain function of the position resumed from a state keeps the saved fit's length (not the new, shorter fit's)."
    f = lambda pos: 1e-2 * (1 - pos) + 1e-4
    rec = RecorderCB(lr=rec_lr)
    learn = tiny_learner([BatchSchedCB(f), rec]); learn.fit(2)
    full = rec.recs['lr']
    cb = BatchSchedCB(f)
    learn = tiny_learner([cb, rec]); learn.fit(2, cbs=[StopAfter(8)])
    sd = cb.state_dict()
    learn.cbs.remove(cb); learn.fit(1, cbs=[BatchSchedCB(f, state=sd)])
    assert rec.recs['lr'] == full[8:]

def test_zero_step_fit_with_a_schedule_is_clear():
    with pytest.raises(ValueError, match='no scheduler steps'): tiny_learner([BatchSchedCB(CosineAnnealing)]).fit(0)

# Issue 9, item 4: figures readable at a glance.
def test_plots_have_readable_titles_and_numbered_epochs():
    from miniai.fig import Fig
    rec = RecorderCB(); rec.recs = {'lr': [i/100 for i in range(30)], 'mom': [0.9]*30}; rec.epochs = [i//10 for i in range(30)]
    fig = rec.plot()
    assert isinstance(fig, Fig) and [ax.get_title() for ax in fig.axes] == ['learning rate', 'momentum / beta1']
    top = fig.axes[0].child_axes[0]  # the epoch axis: ticks at each epoch's start, numbered from 1 as in metrics.csv
    assert list(top.get_xticks()) == [0, 10, 20] and [t.get_text() for t in top.get_xticklabels()] == ['1', '2', '3']
    assert 'epoch' in top.get_xlabel()
    fig = plot_sched(partial(OneCycle, max_lr=1e-2), n_steps=20)
    assert [ax.get_title() for ax in fig.axes] == ['OneCycle: learning rate', 'OneCycle: momentum / beta1']
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    for fig in (rec.plot(), plot_sched(partial(OneCycle, max_lr=1e-2), n_steps=20)):
        c = FigureCanvasAgg(fig); c.draw(); r = c.get_renderer()
        for ax in fig.axes:  # nothing drawn outside the figure (constrained layout): no label clipped
            bb = ax.get_tightbbox(r)
            assert bb.x0 >= -1 and bb.y0 >= -1 and bb.x1 <= fig.bbox.width + 1 and bb.y1 <= fig.bbox.height + 1, bb


# ---------------------------------------------------------------- issue 17 §2: a resume never silent, skipped fp16 steps
class BigScale(Callback):
    "Gives the fit a grad scaler starting at 2**20: fp16 gradients overflow and its first steps are skipped (on CPU too)."
    order = MixedPrecisionCB.order + 1
    def before_fit(self, learn): learn.scaler = torch.amp.GradScaler('cpu', init_scale=2.**20)

def test_fp16_skipped_steps_still_end_the_schedule():
    "fp16 on CPU with forced overflows: 7 of 24 steps skipped, and OneCycle still ends at its final lr (not at update 17's)."
    cb,rec = BatchSchedCB(partial(OneCycle, max_lr=1e-2)),RecorderCB()
    learn = tiny_learner([MixedPrecisionCB('fp16', device_type='cpu'), BigScale(), cb, rec]); learn.fit(3)
    assert learn.total_updates == 24 and learn.n_updates < 24  # some steps were skipped
    assert learn.scaler.get_scale() < 2.**20
    assert cb.n == cb.sched.num_updates == 24  # every slot of the schedule was taken
    assert len(rec.recs['lr']) == learn.n_updates  # the recorder shows the real updates ...
    assert rec.recs['lr'][-1] == pytest.approx(1e-2/1e5, rel=1e-9)  # ... the last one at OneCycle's final lr
    assert rec.recs['mom'][-1] == pytest.approx(0.95)
    assert cb.sched.get_last_lr()[0] == pytest.approx(1e-2/1e5, rel=1e-9)

class StopAfterBatch(Callback):
    "Cancels the fit at the end of training batch `k` (counted over the fit): a stop between batches, resumed exactly."
    def __init__(self, k): self.k,self.seen = k,0
    def after_batch(self, learn):
        if learn.training:
            self.seen += 1
            if self.seen == self.k: raise CancelFitException()

@pytest.mark.parametrize('k', [1, 2, 5, 12])
def test_resume_with_skipped_steps_is_exact(k):
    "The schedule's count (skipped slots included) is in the callback's state: a whole-fit resume records the same lrs."
    full = RecorderCB()
    tiny_learner([BatchSchedCB(partial(OneCycle, max_lr=1e-2)), full, SkipOdd()]).fit(2)
    rec = RecorderCB()
    learn = tiny_learner([BatchSchedCB(partial(OneCycle, max_lr=1e-2)), rec, SkipOdd()]); learn.fit(2, cbs=[StopAfterBatch(k)])
    assert learn.stateful_cbs()['BatchSchedCB'].n == k  # every batch so far took its slot, skipped or not
    st = deepcopy(learn.fit_state())
    rec2 = RecorderCB()
    tiny_learner([BatchSchedCB(partial(OneCycle, max_lr=1e-2)), rec2, SkipOdd()]).fit(2, resume=st)
    assert rec2.recs == full.recs and len(full.recs['lr']) == 8

def test_state_of_another_model_is_refused_before_anything_changes():
    "A saved state from a fit of another model (other parameter shapes or count) is refused in before_fit, naming both."
    cb = BatchSchedCB(partial(OneCycle, max_lr=1e-2))
    learn = tiny_learner([cb]); learn.fit(2, cbs=[StopAfter(3)])
    sd = cb.state_dict()
    assert sd['fit']['params'] == [[[1, 4], [1]]]
    other = TrainLearner(nn.Linear(4, 2), tiny_dls(), lambda p, y: F.mse_loss(p[:, :1], y), lr=1e-2, opt_func=optim.AdamW)
    w = other.model.weight.detach().clone()
    with pytest.raises(ValueError, match=r'tensor 0 of param group 0 has shape \[1, 4\] in the saved state, \[2, 4\] in this fit'):
        other.fit(1, cbs=[BatchSchedCB(partial(OneCycle, max_lr=1e-2), state=sd)])
    assert torch.equal(other.model.weight, w)
    assert other.opt.param_groups[0]['lr'] == 1e-2 and not other.opt.state  # the optimizer got nothing of the saved state
    bias_free = TrainLearner(nn.Linear(4, 1, bias=False), tiny_dls(), F.mse_loss, lr=1e-2, opt_func=optim.AdamW)
    with pytest.raises(ValueError, match=r'params: 1 param groups of \[2\] tensors in the saved state, 1 of \[1\] in this fit'):
        bias_free.fit(1, cbs=[BatchSchedCB(partial(OneCycle, max_lr=1e-2), state=sd)])
    old = deepcopy(sd); del old['fit']['params']  # a state saved before the shapes were recorded: still accepted
    learn.fit(1, cbs=[BatchSchedCB(partial(OneCycle, max_lr=1e-2), state=old)])


# ---------------------------------------------------------------- OneCycle's fast write path (issue 18: shapes called, step no slower)
@pytest.mark.parametrize('opt_func,kw', [(optim.AdamW, {}), (optim.SGD, {'momentum': 0.9})])
def test_onecycle_fast_path_equals_setters(opt_func, kw):
    "Number groups take the one-pass write, tensor groups the setters: the same values, tensors kept in place."
    a = dummy_opt((1e-2, 3e-3), opt_func, **kw)
    b = opt_func([{'params': [nn.Parameter(torch.zeros(1))], 'lr': torch.tensor(l, dtype=torch.float64)} for l in (1e-2, 3e-3)], **kw)
    ts = [pg['lr'] for pg in b.param_groups]
    sa,sb = OneCycle(a, T_max=30),OneCycle(b, T_max=30)
    assert sa._plain in ('beta1', 'momentum') and sb._plain is None
    for _ in range(32):
        sa.step(); sb.step()
        for pa,pb in zip(a.param_groups, b.param_groups):
            assert math.isclose(pa['lr'], float(pb['lr']), rel_tol=1e-15) and get_field(pa, 'mom') == get_field(pb, 'mom')
    assert all(pg['lr'] is t for pg,t in zip(b.param_groups, ts))

def test_onecycle_resume_into_tensor_groups_uses_the_setters():
    "The fast path is chosen for the optimizer the state is loaded into, not saved with the state."
    a = dummy_opt()
    sa = OneCycle(a, T_max=20)
    for _ in range(5): sa.step()
    b = optim.AdamW([{'params': [nn.Parameter(torch.zeros(1))], 'lr': torch.tensor(1e-2, dtype=torch.float64)}])
    t = b.param_groups[0]['lr']
    sb = OneCycle(b, T_max=20); st = sa.state_dict()
    assert '_plain' not in st and '_mset' not in st
    sb.load_state_dict(deepcopy(st))
    assert sb._plain is None and b.param_groups[0]['lr'] is t and float(t) == a.param_groups[0]['lr']
    sa.step(); sb.step()
    assert b.param_groups[0]['lr'] is t and math.isclose(float(t), a.param_groups[0]['lr'], rel_tol=1e-15)

def test_onecycle_refuses_a_positional_peak():
    "OneCycle(opt, 100, 0.) in course code meant 'end near 0'; here it would be a peak of 0: refused with the mapping."
    with pytest.raises(TypeError, match='keep the lr at 0'): OneCycle(dummy_opt(), 100, 0.)
    with pytest.raises(TypeError, match=r'OneCycle\(opt, 100, max_lr=\.\.\.\)'): OneCycle(dummy_opt(), 100, 3e-2)


# ---------------------------------------------------------------- RecorderCB per param group (issue 19: layer-wise groups were invisible)
def _two_groups(params, lr):
    "Two param groups of a Linear(4, 1): the weight at lr/10, the bias at lr."
    ps = list(params)
    return optim.AdamW([{'params': ps[:1], 'lr': lr/10}, {'params': ps[1:], 'lr': lr}])

def _group_learner(cbs):
    "`tiny_learner` with the two param groups of `_two_groups`."
    torch.manual_seed(0)
    return TrainLearner(nn.Linear(4, 1), tiny_dls(), F.mse_loss, lr=1e-2, cbs=list(cbs), opt_func=_two_groups)

def test_recorder_records_every_group():
    "lr and momentum of each group are that group's OneCycle values; the loss is recorded once; recs keeps group 0."
    rec = RecorderCB(lr=rec_lr, mom=rec_mom, wd=rec_wd, loss=rec_loss)
    learn = _group_learner([BatchSchedCB(OneCycle), rec]); learn.fit(2)
    assert rec.per_group == ['lr', 'mom', 'wd'] and set(rec.group_recs) == {'lr', 'mom', 'wd'}
    opt = dummy_opt((1e-3, 1e-2)); lrs,moms = trace(opt, OneCycle(opt, T_max=16), 16)
    assert rec.group_recs['lr'] == [[v[0] for v in lrs], [v[1] for v in lrs]]
    assert rec.group_recs['mom'] == [[v[0] for v in moms], [v[1] for v in moms]]
    assert rec.recs['lr'] == rec.group_recs['lr'][0] and rec.group_recs['lr'][1][0] == pytest.approx(1e-2/25)
    assert len(rec.recs['loss']) == 16 and 'loss' not in rec.group_recs

def test_recorder_per_group_is_explicit_for_other_functions():
    "A function of your own is recorded once unless named in per_group; a name it does not record is refused at construction."
    top = lambda cb: float(cb.pg['lr'])
    once,each = RecorderCB(x=top),RecorderCB(per_group='x', x=top)
    _group_learner([BatchSchedCB(OneCycle), once, each]).fit(1)
    assert once.group_recs == {} and len(each.group_recs['x']) == 2 and each.group_recs['x'][0] == once.recs['x']
    assert each.group_recs['x'][1] != each.group_recs['x'][0]
    with pytest.raises(ValueError, match=r"per_group=\['y'\]: \['y'\] not recorded"): RecorderCB(per_group=['y'], x=top)

def test_recorder_per_group_resumes():
    "The other groups' records go into the state and come back; an older state without them still loads (group 0 only)."
    full = RecorderCB(); _group_learner([BatchSchedCB(OneCycle), full]).fit(2)
    class Stop(Callback):
        def after_batch(self, learn):
            if learn.training and learn.iter == 4 and learn.epoch == 1: raise CancelFitException()
    rec = RecorderCB(); learn = _group_learner([BatchSchedCB(OneCycle), rec, Stop()]); learn.fit(2)
    st = rec.state_dict()
    assert 8 < len(st['recs']['lr']) < 16  # stopped in the second epoch
    assert len(st['groups']['lr']) == 1 and st['groups']['lr'][0] == full.group_recs['lr'][1][:len(st['recs']['lr'])]
    rec2 = RecorderCB(); rec2.load_state_dict(deepcopy(st)); rec2.before_fit(learn)
    assert rec2.group_recs == rec.group_recs
    old = {k: v for k,v in st.items() if k != 'groups'}
    rec3 = RecorderCB(); rec3.load_state_dict(deepcopy(old)); rec3.before_fit(learn)
    assert rec3.recs == rec.recs and rec3.group_recs['lr'] == [rec.recs['lr']]
    with pytest.raises(ValueError, match='per-group values'): RecorderCB(per_group=[]).load_state_dict(deepcopy(st))

def test_recorder_plot_is_one_figure_with_a_line_per_group():
    rec = RecorderCB(lr=rec_lr, loss=rec_loss)
    _group_learner([BatchSchedCB(OneCycle), rec]).fit(2)
    fig = rec.plot()
    assert isinstance(fig, Figure) and len([a for a in fig.axes if a.get_title()]) == 2
    lr_ax,loss_ax = fig.axes[0],fig.axes[2] if len(fig.axes) > 2 else fig.axes[1]
    labels = [l.get_label() for l in lr_ax.lines if l.get_label().startswith('group')]
    assert labels == ['group 0', 'group 1'] and [t.get_text() for t in lr_ax.get_legend().texts] == labels
    assert list(lr_ax.lines[1].get_ydata()) == rec.group_recs['lr'][1]

def test_driving_names_keep_their_old_import_path():
    "The callbacks, recorder and previews live in miniai.schedcb; miniai.sched still gives them (and check_T_max, now in schedbase)."
    import miniai.sched as sched, miniai.schedcb as schedcb, miniai.schedbase as schedbase
    for nm in schedcb.__all__ + ['_mark_epochs']: assert getattr(sched, nm) is getattr(schedcb, nm), nm
    assert sched.check_T_max is schedbase.check_T_max and 'BatchSchedCB' not in sched.__all__

def test_recorder_has_fastais_names():
    "fastai's recorder.plot_loss(), .lrs and .values on RecorderCB, and clear errors when what they need is not recorded."
    from miniai.learner import TrainLearner, MetricsCB
    from miniai.schedcb import RecorderCB, rec_lr, rec_loss
    from miniai.fig import Fig
    torch.manual_seed(0)
    x = torch.randn(64, 4); y = x.sum(1, keepdim=True)
    b = [(x[i:i+16], y[i:i+16]) for i in range(0, 64, 16)]
    class DLs: train,valid = b,b[:1]
    rec,bare = RecorderCB(lr=rec_lr, loss=rec_loss),RecorderCB(mom=lambda cb: 0.)
    m = MetricsCB(quiet=True)
    learn = TrainLearner(torch.nn.Linear(4, 1), DLs(), lr=0.05, cbs=[m, rec, bare], thread_guard=False)
    learn.fit(2)
    assert rec.lrs == rec.recs['lr'] and len(rec.lrs) == 8
    assert rec.values == [[r['train_loss'], r['valid_loss']] for r in m.history] and len(rec.values) == 2
    fig = rec.plot_loss()
    ax, = fig.axes
    assert isinstance(fig, Fig) and len(ax.lines[0].get_ydata()) == 8 and list(ax.lines[1].get_ydata()) == [r['valid_loss'] for r in m.history]
    with pytest.raises(ValueError, match=r'record it with RecorderCB\(loss=rec_loss'): bare.plot_loss()
    with pytest.raises(AttributeError, match='not the lr'): bare.lrs


# ---------------------------------------------------------------- beside torch's schedulers (issue 19)
OTHERS = {'StepLR': partial(lr_scheduler.StepLR, step_size=3, gamma=0.1),
          'MultiStepLR': partial(lr_scheduler.MultiStepLR, milestones=[2, 5], gamma=0.1),
          'ExponentialLR': partial(lr_scheduler.ExponentialLR, gamma=0.9),
          'LinearLR': partial(lr_scheduler.LinearLR, start_factor=0.1, total_iters=3)}
torch_cos = partial(lr_scheduler.CosineAnnealingLR, T_max=10, eta_min=0.001)
our_cos = partial(CosineAnnealing, T_max=10, eta_min=0.001, chainable=True)

def one_param_sgd(lrs=(0.05,)): return optim.SGD([{'params': [nn.Parameter(torch.zeros(1))], 'lr': lr} for lr in lrs])

def lrs_of(build, n=20, lrs=(0.05,)):
    "The lrs of each of `n` updates under the schedulers `build(opt)` returns (a list, stepped in its order)."
    opt = one_param_sgd(lrs); ss = build(opt); out = []
    for _ in range(n):
        out.append([pg['lr'] for pg in opt.param_groups]); opt.step()
        for s in ss: s.step()
    return out

@pytest.mark.parametrize('lrs', [(0.05,), (0.05, 0.3)])
@pytest.mark.parametrize('cos_first', [True, False])
@pytest.mark.parametrize('other', list(OTHERS))
def test_chainable_composes_like_torch(other, cos_first, lrs):
    "torch's CosineAnnealingLR beside another scheduler, and ours with chainable=True beside the same: the same lrs."
    def pair(cos): return lambda o: [cos(o), OTHERS[other](o)] if cos_first else [OTHERS[other](o), cos(o)]
    t,m = lrs_of(pair(torch_cos), lrs=lrs),lrs_of(pair(our_cos), lrs=lrs)
    assert_rel(m, t)
    assert len({v[0] for v in t}) >= 15  # both schedulers act: not a trivially constant trace
    if len(lrs) == 2: assert t[0][1] / t[0][0] == pytest.approx(6, rel=1e-12)  # each group from its own lr

def test_chainable_steplr_issue_numbers():
    "The issue's case: at update 4 StepLR's factor 0.1 stays in (the closed form overwrote it: 0.033 instead of 0.0035)."
    def build(cos): return lambda o: [cos(o), OTHERS['StepLR'](o)]
    closed = lrs_of(build(partial(CosineAnnealing, T_max=10, eta_min=0.001)))
    chained = lrs_of(build(our_cos))
    assert chained[4][0] == pytest.approx(0.0034651050903450734, rel=1e-12)
    assert closed[4][0] == pytest.approx(0.03307091636218622, rel=1e-12)  # the default keeps the closed form

@pytest.mark.parametrize('eta_min', [0., 1e-3])
def test_chainable_alone_equals_torch_past_T_max(eta_min):
    "On its own, chainable=True gives torch's numbers, also past T_max (where torch's cosine rises again)."
    for T,n in ((1, 7), (2, 11), (3, 15), (10, 43), (100, 403), (1000, 1001)):
        t = lrs_of(lambda o: [lr_scheduler.CosineAnnealingLR(o, T, eta_min=eta_min)], n, lrs=(0.05, 0.2))
        m = lrs_of(lambda o: [CosineAnnealing(o, T, eta_min=eta_min, chainable=True)], n, lrs=(0.05, 0.2))
        if eta_min == 0:  # at the bottom both are 0 up to rounding (torch: ~1e-19, ours: 0), no relative comparison there
            assert all(abs(x) < 1e-17 for r in t + m for x in r if abs(x) < 1e-15)
            t,m = zip(*[(a, b) for a,b in zip(t, m) if min(map(abs, a + b)) >= 1e-15])
        assert_rel(m, t)
    c = lrs_of(lambda o: [CosineAnnealing(o, 10, eta_min=1e-3)], 30)
    assert c[10:] == [[1e-3]] * 20  # the default still holds eta_min past T_max

@pytest.mark.parametrize('chainable', [True, False])
@pytest.mark.parametrize('milestone', [2, 3, 5])
def test_sequentiallr_over_ours(milestone, chainable):
    "torch's SequentialLR: a LinearLR warm-up, then our cosine, as with torch's (closed form: to rounding, up to T_max)."
    warm = OTHERS['LinearLR']
    def build(cos): return lambda o: [lr_scheduler.SequentialLR(o, [warm(o), cos(o)], milestones=[milestone])]
    t = lrs_of(build(torch_cos))
    m = lrs_of(build(partial(CosineAnnealing, T_max=10, eta_min=0.001, chainable=chainable)))
    n = 20 if chainable else milestone + 11
    assert_rel(m[:n], t[:n])

@pytest.mark.parametrize('chainable', [True, False])
def test_sequentiallr_starting_with_ours(chainable):
    def build(cos): return lambda o: [lr_scheduler.SequentialLR(o, [cos(o), lr_scheduler.ExponentialLR(o, 0.9)], milestones=[6])]
    assert_rel(lrs_of(build(partial(CosineAnnealing, T_max=10, eta_min=0.001, chainable=chainable))), lrs_of(build(torch_cos)))

@pytest.mark.parametrize('cos_first', [True, False])
def test_chainedscheduler_over_ours(cos_first):
    def build(cos):
        def b(o):
            ss = [cos(o), OTHERS['LinearLR'](o)]
            return [lr_scheduler.ChainedScheduler(ss if cos_first else ss[::-1], optimizer=o)]
        return b
    assert_rel(lrs_of(build(our_cos)), lrs_of(build(torch_cos)))

@pytest.mark.parametrize('opt_first', [True, False])
def test_chainable_resume(opt_first):
    "Step 5, save optimizer and schedulers, build new ones, load both: the lrs go on as in an unbroken run."
    def build(o): return [our_cos(o), OTHERS['StepLR'](o)]
    full = lrs_of(build, 20, lrs=(0.05, 0.01))
    o_a = one_param_sgd((0.05, 0.01)); ss_a = build(o_a)
    for _ in range(5): o_a.step(); [s.step() for s in ss_a]
    o_b = one_param_sgd((0.3, 0.3))  # other lrs at construction: the saved state wins
    if opt_first: o_b.load_state_dict(o_a.state_dict()); ss_b = build(o_b)
    else: ss_b = build(o_b); o_b.load_state_dict(o_a.state_dict())
    for a,b in zip(ss_a, ss_b): b.load_state_dict(a.state_dict())
    rest = []
    for _ in range(15):
        rest.append([pg['lr'] for pg in o_b.param_groups]); o_b.step(); [s.step() for s in ss_b]
    assert rest == full[5:]
    assert ss_b[0].num_updates == 20 and ss_b[0].last_epoch == 20

def test_chainable_validation():
    for bad in ('yes', 1, 0, None, 1.):
        with pytest.raises(ValueError, match=rf"chainable={re.escape(repr(bad))}: must be True or False"):
            CosineAnnealing(one_param_sgd(), 10, chainable=bad)
    s = CosineAnnealing(one_param_sgd(), 10, chainable=True)
    s.step_update(3); s.step_update(3)
    with pytest.raises(ValueError, match=r'num_updates=2: this chainable CosineAnnealing is at update 3'): s.step_update(2)
    with pytest.raises(ValueError, match='saved by a CosineAnnealing with chainable=True, loaded into one with chainable=False'):
        CosineAnnealing(one_param_sgd(), 10).load_state_dict(s.state_dict())
    closed = CosineAnnealing(one_param_sgd(), 10)
    assert closed.closed_form and not s.closed_form and CosineAnnealing.closed_form

def test_chainable_step_update_jumps_like_steps():
    "step_update(n) on a chainable scheduler steps the recurrence through every update up to n: the same as n step()s."
    o1,o2 = one_param_sgd((0.05, 0.02)),one_param_sgd((0.05, 0.02))
    s1,s2 = our_cos(o1),our_cos(o2)
    for _ in range(13): s1.step()
    s2.step_update(13)
    assert [pg['lr'] for pg in o1.param_groups] == [pg['lr'] for pg in o2.param_groups]
    assert s1.num_updates == s2.num_updates == 13

def test_chainable_keeps_the_groups_lr_at_construction():
    "Built after another scheduler has scaled the lr, a chainable cosine leaves it (torch's rule); the default resets it."
    o = one_param_sgd(); lr_scheduler.LinearLR(o, start_factor=0.1, total_iters=3)
    our_cos(o)
    assert o.param_groups[0]['lr'] == pytest.approx(0.005, rel=1e-15) and o.param_groups[0]['initial_lr'] == 0.05
    CosineAnnealing(o, 10)
    assert o.param_groups[0]['lr'] == 0.05

def test_chainable_tensor_lr():
    "A tensor lr is written in place and follows the float schedule to float32 rounding."
    o = optim.SGD([nn.Parameter(torch.zeros(1))], lr=torch.tensor(0.05)); t = o.param_groups[0]['lr']
    ss = [our_cos(o), OTHERS['StepLR'](o)]
    ref = lrs_of(lambda o: [our_cos(o), OTHERS['StepLR'](o)], 12, lrs=(torch.tensor(0.05).item(),))
    got = []
    for _ in range(12):
        got.append([float(o.param_groups[0]['lr'])]); o.step(); [s.step() for s in ss]
    assert_rel(got, ref, rel=1e-6)
    assert o.param_groups[0]['lr'] is t

def test_chainable_in_a_fit_equals_torch():
    "Driven by BatchSchedCB (length filled from the fit), chainable=True trains with torch's CosineAnnealingLR's lrs."
    got = []
    for sched in (partial(CosineAnnealing, eta_min=1e-4, chainable=True), partial(lr_scheduler.CosineAnnealingLR, eta_min=1e-4)):
        rec = RecorderCB(); tiny_learner([BatchSchedCB(sched), rec]).fit(2)
        got.append(rec.recs['lr'])
    assert len(got[0]) == 16 and got[0][0] > got[0][8] > got[0][-1]
    assert_rel([got[0]], [got[1]])

from bisect import bisect_right
class OldSequentialLR(lr_scheduler.SequentialLR):
    "torch's SequentialLR.step as it was before torch added `_update_lr` (2025): `scheduler.step(0)` at a milestone."
    def step(self):
        self.last_epoch += 1
        idx = bisect_right(self._milestones, self.last_epoch)
        s = self._schedulers[idx]
        if idx > 0 and self._milestones[idx - 1] == self.last_epoch: s.step(0)
        else: s.step()
        self._last_lr = s.get_last_lr()

@pytest.mark.parametrize('cos', [our_cos, partial(CosineAnnealing, T_max=10, eta_min=0.001),
                                 partial(OneCycle, T_max=10, max_lr=0.05, moms=None)])
def test_older_torch_sequentiallr_calls_step0(cos):
    "The torch the project still supports (>= 2.5) calls `step(0)` where 2.13 calls `_update_lr(0)`: the same lrs."
    warm = OTHERS['LinearLR']
    def build(seq): return lambda o: [seq(o, [warm(o), cos(o)], milestones=[3])]
    old,new = lrs_of(build(OldSequentialLR)),lrs_of(build(lr_scheduler.SequentialLR))
    o = one_param_sgd(); cos(o)
    assert old == new and old[3] == [o.param_groups[0]['lr']]  # the milestone restarts at update 0's lr
    assert old[2] != old[3] and len({v[0] for v in old}) >= 12

def test_step_and_update_lr_with_an_epoch():
    "step(0) (older torch's SequentialLR) and _update_lr(0) set the count to 0 and write update 0's lr; a bad epoch is refused."
    for make in (our_cos, partial(CosineAnnealing, T_max=10), partial(OneCycle, T_max=10, moms=None)):
        o = one_param_sgd(); s = make(o); first = o.param_groups[0]['lr']
        for _ in range(4): s.step()
        assert o.param_groups[0]['lr'] != first
        s.step(0)
        assert s.num_updates == s.last_epoch == 0 and o.param_groups[0]['lr'] == first
        for _ in range(4): s.step()
        s._update_lr(0)
        assert s.num_updates == 0 and o.param_groups[0]['lr'] == first
        for bad in (-1, 2.5, 'x', 1.):
            with pytest.raises(ValueError, match=rf"epoch={re.escape(repr(bad))}"): s._update_lr(bad)

@pytest.mark.parametrize('opt_func,kw,moms', [(optim.AdamW, {}, True), (optim.SGD, {'momentum': 0.9}, True), (optim.SGD, {}, False)])
def test_onecycle_writes_torchs_param_group_keys(opt_func, kw, moms):
    "initial_lr, max_lr, min_lr (and with momentum max_momentum, base_momentum) as torch's OneCycleLR leaves them."
    o1,o2 = (opt_func([{'params': [torch.zeros(1, requires_grad=True)]} for _ in range(3)], lr=0.1, **kw) for _ in range(2))
    if moms: lr_scheduler.OneCycleLR(o1, max_lr=[3e-2, 2e-2, 1e-2], total_steps=20, div_factor=5., final_div_factor=1e2,
                                     base_momentum=0.7, max_momentum=0.9)
    else: lr_scheduler.OneCycleLR(o1, max_lr=[3e-2, 2e-2, 1e-2], total_steps=20, div_factor=5., final_div_factor=1e2, cycle_momentum=False)
    OneCycle(o2, 20, max_lr=[3e-2, 2e-2, 1e-2], div=5., div_final=5e2, moms=(0.9, 0.7, 0.9) if moms else None)
    keys = ('max_lr', 'min_lr') + (('max_momentum', 'base_momentum') if moms else ())
    for g1,g2 in zip(o1.param_groups, o2.param_groups):
        for k in keys: assert g2[k] == pytest.approx(g1[k], rel=1e-15), k
        if not moms: assert 'max_momentum' not in g2
        assert g2['initial_lr'] == pytest.approx(g1['initial_lr'], rel=1e-15) == pytest.approx(g1['max_lr']/5)

@pytest.mark.parametrize('first', ['torch', 'miniai'])
def test_schedulers_after_a_onecycle_start_where_torchs_do(first):
    "After a one-cycle (torch's or miniai's) on an optimizer, torch's CosineAnnealingLR and miniai's CosineAnnealing start from\n    its initial_lr (max_lr/div) alike, and OneCycle(max_lr=None) peaks at the first one's max_lr, not at max_lr/div."
    def opt(): return optim.SGD([{'params': [torch.zeros(1, requires_grad=True)]} for _ in range(2)], lr=0.1, momentum=0.9)
    def one_cycle(o):
        if first == 'torch': lr_scheduler.OneCycleLR(o, max_lr=[4e-2, 1e-2], total_steps=10, div_factor=8.)
        else: OneCycle(o, 10, max_lr=[4e-2, 1e-2], div=8.)
    o1,o2,o3 = opt(),opt(),opt()
    for o in (o1, o2, o3): one_cycle(o)
    t,m = lr_scheduler.CosineAnnealingLR(o1, T_max=5),CosineAnnealing(o2, 5)
    assert [g['lr'] for g in o1.param_groups] == pytest.approx([5e-3, 1.25e-3], rel=1e-15)
    assert [g['lr'] for g in o2.param_groups] == pytest.approx([5e-3, 1.25e-3], rel=1e-15)
    for _ in range(5):
        t.step(); m.step()
        assert [g['lr'] for g in o2.param_groups] == pytest.approx([g['lr'] for g in o1.param_groups], rel=1e-12, abs=1e-15)
    assert OneCycle(o3, 10, max_lr=None).max_lrs == pytest.approx([4e-2, 1e-2], rel=1e-15)

def test_recorder_lives_in_miniai_recorder_with_plot_sched_in_its_class_body():
    """RecorderCB, the rec_* functions, save_fig and loss_fig are defined in miniai.recorder; miniai.schedcb re-exports
    them. fastai's plot_sched is in RecorderCB's class body (it was @patch'ed on by miniai.recipes), so it is there
    without importing miniai.recipes."""
    import subprocess, sys
    import miniai.recorder as recorder, miniai.schedcb as schedcb
    for nm in recorder.__all__ + ['_mark_epochs', '_LABELS']:
        assert getattr(schedcb, nm) is getattr(recorder, nm) and nm not in schedcb.__all__, nm
    assert 'plot_sched' in vars(recorder.RecorderCB) and vars(recorder.RecorderCB)['plot_sched'].__module__ == 'miniai.recorder'
    code = ("import sys, miniai.recorder as r; assert 'plot_sched' in vars(r.RecorderCB); "
            "assert 'miniai.recipes' not in sys.modules and 'miniai.schedcb' not in sys.modules")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
