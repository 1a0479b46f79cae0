"""Tests for miniai.schedfamily: equality with pytorch-accelerated and pytorch_optimizer where they are right,
properties of every member (bounds, continuity, clamping past the end, resuming), validation, param groups."""
import math, time, tracemalloc, warnings
from copy import deepcopy
from functools import partial

import numpy as np
import pytest
import torch
from torch import nn, optim
from hypothesis import given, settings, assume, strategies as st

from miniai.schedfamily import (WarmupDecaySched, LinearSched, CosineSched, PolySched, RexSched, WSDSched,
                                CosineRestartsSched, ChebyshevSched, chebyshev_steps, fractal_perm, ParamSched,
                                ProportionScheduler, CosineLrScheduler, SchedLin, SchedCos, SchedNo, SchedExp, SchedPoly,
                                combine_scheds, param_groups, layer_units, no_wd_params, group_opt_func)

warnings.filterwarnings('ignore', category=DeprecationWarning)
warnings.filterwarnings('ignore', message='Detected call of')
import pytorch_optimizer.lr_scheduler as po
from pytorch_optimizer.lr_scheduler.chebyshev import get_chebyshev_lr_lambda
import pytorch_accelerated.schedulers as pas  # (calls set_seed(42))

FAST = settings(max_examples=40, deadline=None)


# ---------------------------------------------------------------- helpers
def groups(lrs=(1e-2,), opt_func=optim.SGD, **kw):
    "An optimizer with one single-parameter group per lr."
    return opt_func([{'params': [nn.Parameter(torch.zeros(1))], 'lr': lr} for lr in lrs], **kw)

def lr0(o): return o.param_groups[0]['lr']

def values(s, ns):
    "The per-group values `get_updated_values(n)` for each n (list of lists)."
    return [list(s.get_updated_values(n)) for n in ns]

def close(a, b, rel=1e-12, abs_=1e-15): return abs(a - b) <= max(rel*max(abs(a), abs(b)), abs_)


# ---------------------------------------------------------------- equality with the real packages
@FAST
@given(E=st.integers(1, 12), spe=st.integers(1, 9), k=st.floats(0.3, 3.), lr_min=st.floats(0., 1e-3),
       ratio=st.one_of(st.none(), st.floats(0., 1.)), C=st.integers(0, 3), ng=st.integers(1, 3))
def test_cosine_lr_equals_pyacc(E, spe, k, lr_min, ratio, C, ng):
    "No warmup, no warmup ratio: the same lr as pytorch-accelerated for every update count, every group."
    assume(C <= E)
    lrs = [1e-2*(i + 1) for i in range(ng)]
    kw = dict(k_decay=k, lr_min=lr_min, min_lr_ratio=ratio, num_cooldown_epochs=C)
    o1,o2 = groups(lrs),groups(lrs)
    a,b = pas.CosineLrScheduler(o1, E, spe, **kw),CosineLrScheduler(o2, E, spe, **kw)
    for n in range(E*spe + 5):
        a.step_update(n); b.step_update(n)
        for g1,g2 in zip(o1.param_groups, o2.param_groups): assert close(g1['lr'], g2['lr']), (n, g1['lr'], g2['lr'])

def test_cosine_lr_count_convention():
    "pyacc's stateful step() evaluates n=0 first (f(0) trains twice); ours moves to f(n) after n steps."
    o1,o2 = groups(),groups()
    a,b = pas.CosineLrScheduler(o1, 2, 5),CosineLrScheduler(o2, 2, 5)
    la,lb = [],[]
    for _ in range(10):
        la.append(lr0(o1)); lb.append(lr0(o2))
        o1.step(); o2.step(); a.step(); b.step()
    assert la[0] == la[1] == lb[0] == 1e-2 and lb[1] < 1e-2
    assert all(close(x, y) for x,y in zip(la[1:], lb[:-1]))

@FAST
@given(T=st.integers(2, 120), wf=st.floats(0, 0.99), mx=st.floats(1e-3, 1.), mn=st.floats(0., 1.), it=st.floats(0., 1.),
       cls=st.sampled_from(['linear', 'cosine']))
def test_linear_cosine_equal_pytorch_optimizer(T, wf, mx, mn, it, cls):
    "Their (t+1)-th step() returns our f(t), for t up to t_max (their valid range), warmup < t_max."
    W = int(wf*T)
    kw = dict(max_lr=mx, min_lr=mn*mx, init_lr=it*mx)
    theirs = {'linear': po.LinearScheduler, 'cosine': po.CosineScheduler}[cls](groups(), t_max=T, warmup_steps=W, **kw)
    ours = {'linear': LinearSched, 'cosine': CosineSched}[cls](groups(), T_max=T, warmup_steps=W, **kw)
    for t in range(T + 1): assert close(float(theirs.step()), ours.get_updated_values(t)[0]), t

@FAST
@given(T=st.integers(12, 100), W=st.integers(0, 10), power=st.floats(0.2, 3.))
def test_poly_warmup_equals_pytorch_optimizer(T, W, power):
    "Their PolyScheduler is only right up to the end of warmup (then it grows past max_lr): equal there."
    kw = dict(max_lr=0.01, min_lr=1e-3, init_lr=1e-4)
    theirs = po.PolyScheduler(groups(), t_max=T, warmup_steps=W, poly_order=power, **kw)
    ours = PolySched(groups(), T_max=T, warmup_steps=W, power=power, **kw)
    for t in range(W + 1): assert close(theirs.step(), ours.get_updated_values(t)[0])
    assert close(theirs.step(), 0.01) and theirs.step() > 0.0101 and 0.01 >= max(ours.get_updated_values(t)[0] for t in range(T + 5))

@FAST
@given(T=st.integers(1, 200), mx=st.floats(1e-3, 1.), mn=st.floats(0., 1.))
def test_rex_equals_pytorch_optimizer(T, mx, mn):
    "After t >= 1 steps both hold f(t) (theirs starts at min_lr before the first step; ours at f(0) = max)."
    o1,o2 = groups(),groups()
    a,b = po.REXScheduler(o1, total_steps=T, max_lr=mx, min_lr=mn*mx),RexSched(o2, T_max=T, max_lr=mx, min_lr=mn*mx)
    assert close(lr0(o2), mx)
    for _ in range(T + 5):
        a.step(); b.step()
        assert close(lr0(o1), lr0(o2))

@FAST
@given(first=st.integers(2, 30), mult=st.sampled_from([1., 1.5, 2., 0.7]), W=st.integers(0, 5), gamma=st.floats(0.5, 1.))
def test_restarts_equal_pytorch_optimizer(first, mult, W, gamma):
    "One group, while the decayed peak stays above min_lr (below it theirs leaves [min_lr, max_lr])."
    assume(W < first)
    o1,o2 = groups(),groups()
    kw = dict(first_cycle_steps=first, cycle_mult=mult, max_lr=0.01, min_lr=1e-3, warmup_steps=W, gamma=gamma)
    a,b = po.CosineAnnealingWarmupRestarts(o1, **kw),CosineRestartsSched(o2, **kw)
    for t in range(1, 200):
        a.step(); b.step()
        if 0.01*gamma**a.cycle >= 1e-3: assert close(lr0(o1), lr0(o2)), t

@pytest.mark.parametrize('shape', ['cosine', 'linear', '1-sqrt', '1-square'])
@pytest.mark.parametrize('W,S,D', [(0, 10, 5), (10, 20, 15), (3, 0, 7), (1, 1, 1)])
def test_wsd_equals_pytorch_optimizer(shape, W, S, D):
    "Equal to get_wsd_schedule where it respects the floor: cosine with a floor, every shape with a floor of 0."
    r = 0.1 if shape == 'cosine' else 0.
    o1 = groups(); a = po.get_wsd_schedule(o1, W, S, D, min_lr_ratio=r, cooldown_type=shape)
    b = WSDSched(groups(), T_max=W + S + D, warmup_steps=W, decay_steps=D, decay_shape=shape, min_ratio=r, init_ratio=0.)
    for t in range(1, W + S + D + 10):
        o1.step(); a.step(); b.step()
        assert close(lr0(o1), lr0(b.optimizer)), t

def test_wsd_no_jump_at_the_end():
    "Theirs decays to 0 and jumps to min_lr_ratio at the end; ours goes down to the floor and stays."
    o1 = groups(); a = po.get_wsd_schedule(o1, 5, 20, 25, min_lr_ratio=0.2, cooldown_type='linear')
    b = WSDSched(groups(), T_max=50, warmup_steps=5, decay_steps=25, decay_shape='linear', min_ratio=0.2)
    va,vb = [],[]
    for _ in range(60):
        va.append(lr0(o1)); vb.append(lr0(b.optimizer)); o1.step(); a.step(); b.step()
    assert max(np.diff(va)) > 1e-3                    # their jump up
    assert max(np.diff(vb)) <= 0.01/5 + 1e-12         # ours: only warmup steps go up
    assert close(vb[-1], 0.002)

@pytest.mark.parametrize('P', [8, 16, 32, 256])
def test_chebyshev_equals_pytorch_optimizer(P):
    s = ChebyshevSched(groups([1.]), T_max=P)
    assert np.allclose(s.mults, po.get_chebyshev_perm_steps(P), rtol=1e-13)
    assert all(close(s.get_updated_values(n)[0], get_chebyshev_lr_lambda(n + 2, P)) for n in range(P))

def test_chebyshev_lengths():
    assert fractal_perm(8) == [0, 7, 3, 4, 1, 6, 2, 5]
    for T,P in ((1, 1), (2, 2), (5, 8), (8, 8), (9, 16), (600, 1024)):
        s = ChebyshevSched(groups([1.]), T_max=T)
        assert len(s.mults) == P and sorted(s.mults) == sorted(chebyshev_steps(P))
        assert len(ChebyshevSched(groups([1.]), T_max=T, pow2=False).mults) == T
    assert sorted(ChebyshevSched(groups([1.]), T_max=600, pow2=False).mults) == sorted(chebyshev_steps(600))
    assert list(ChebyshevSched(groups([1.]), T_max=8, fractal=False).mults) == chebyshev_steps(8)

@FAST
@given(mx=st.floats(1e-3, 1.), mn=st.floats(0., 0.99), vmax=st.floats(0., 5.), vmin=st.floats(0., 5.))
def test_proportion_equals_pytorch_optimizer(mx, mn, vmax, vmin):
    o1,o2 = groups([mx]),groups([mx])
    l1,l2 = CosineSched(o1, T_max=30, min_lr=mn*mx),CosineSched(o2, T_max=30, min_lr=mn*mx)
    a = po.ProportionScheduler(l1, max_lr=mx, min_lr=mn*mx, max_value=vmax, min_value=vmin)
    b = ProportionScheduler(l2, max_lr=mx, min_lr=mn*mx, max_value=vmax, min_value=vmin)
    for _ in range(35):
        l1.step(); l2.step()
        assert close(a.step(), b.step(), rel=1e-9, abs_=1e-12)
        assert b.get_lr() == o2.param_groups[0]['rho']


# ---------------------------------------------------------------- properties of every member
# Each case: (scheduler factory on an optimizer, levels (lo, hi) per group, end of the schedule, max step change per
# group or None (not meant to be continuous)). Two or three groups with their own lrs.
lrs_st = st.lists(st.floats(1e-4, 1.), min_size=1, max_size=3)
ks = st.floats(1., 3.)

@st.composite
def warmup_decay_cases(draw):
    T = draw(st.integers(2, 300)); W = draw(st.integers(0, T - 1))
    lrs = draw(lrs_st); mr = draw(st.floats(0., 1.)); ir = draw(st.one_of(st.none(), st.floats(0., 1.)))
    k = draw(ks); which = draw(st.sampled_from(['linear', 'cosine', 'poly', 'rex', 'wsd']))
    kw = dict(T_max=T, warmup_steps=W, min_ratio=mr, init_ratio=ir, k_decay=k)
    D = T - W
    if which == 'linear': f,L = partial(LinearSched, **kw),1.
    elif which == 'cosine': f,L = partial(CosineSched, **kw),math.pi/2
    elif which == 'poly':
        p = draw(st.floats(1., 3.)); f,L = partial(PolySched, power=p, **kw),p
    elif which == 'rex': f,L = partial(RexSched, **kw),2.
    else:
        D = draw(st.integers(0, T - W)); shape = draw(st.sampled_from(['cosine', 'linear', '1-square', '1-sqrt']))
        f = partial(WSDSched, decay_steps=D, decay_shape=shape, **kw)
        L = {'cosine': math.pi/2, 'linear': 1., '1-square': 2.}.get(shape)
    ir_ = mr if ir is None else ir
    lo = [lr*min(mr, ir_) for lr in lrs]
    def step_bound(i):
        span,wspan = lrs[i]*(1 - mr),lrs[i]*abs(1 - ir_)
        dec = 0. if D == 0 else (span*math.sqrt(k/D) if L is None else span*L*k/D)
        return max(wspan/W if W else 0., dec) if D or not W else None
    return f,lrs,lo,lrs,T,step_bound

@st.composite
def other_cases(draw):
    lrs = draw(lrs_st)
    which = draw(st.sampled_from(['restarts', 'restarts_n', 'chebyshev', 'param', 'param_rel', 'cosine_lr']))
    if which == 'restarts':
        first = draw(st.integers(2, 40)); W = draw(st.integers(1, first - 1)); mult = draw(st.sampled_from([1., 1.5, 2.]))
        g = draw(st.floats(0.3, 1.)); mr = draw(st.floats(0., 1.)); T = draw(st.integers(1, 300)); k = draw(ks)
        f = partial(CosineRestartsSched, T_max=T, first_cycle_steps=first, cycle_mult=mult, gamma=g, warmup_steps=W,
                    min_ratio=mr, k_decay=k)
        bound = lambda i: lrs[i]*(1 - mr)*max(1/W, math.pi/2*k/max(1, first - W - 0))  # warmup each cycle, start = floor
        # (later cosines are at least as long as the first when mult >= 1)
        return f,lrs,[lr*mr for lr in lrs],lrs,T,bound
    if which == 'restarts_n':
        n = draw(st.integers(1, 4)); T = draw(st.integers(12*n, 300)); mult = draw(st.sampled_from([1., 2., 0.8]))
        f = partial(CosineRestartsSched, T_max=T, n_cycles=n, cycle_mult=mult, warmup_steps=4, warmup_each_cycle=draw(st.booleans()))
        return f,lrs,[0.]*len(lrs),lrs,T,None
    if which == 'chebyshev':
        T = draw(st.integers(1, 200)); pow2 = draw(st.booleans()); fr = draw(st.booleans())
        P = 1 << (T - 1).bit_length()
        f = partial(ChebyshevSched, T_max=T, pow2=pow2, fractal=fr)
        return f,lrs,[lr*0.99 for lr in lrs],[lr*20 for lr in lrs],(P if pow2 else T) - 1,None
    if which in ('param', 'param_rel'):
        T = draw(st.integers(1, 300)); a,b = draw(st.floats(1e-4, 1.)),draw(st.floats(1e-4, 1.))
        kind = draw(st.sampled_from(['lin', 'cos', 'exp', 'poly', 'no', 'combined']))
        ann,L = {'lin': (SchedLin(a, b), abs(b - a)), 'cos': (SchedCos(a, b), abs(b - a)*math.pi/2),
                 'exp': (SchedExp(a, b), abs(math.log(b/a))*max(a, b)), 'poly': (SchedPoly(a, b, 2.), 2*abs(b - a)),
                 'no': (SchedNo(a), 0.), 'combined': (combine_scheds([0.3, 0.7], [SchedCos(a, b), SchedCos(b, a)]),
                                                      abs(b - a)*math.pi/2/0.3)}[kind]
        rel = which == 'param_rel'
        f = partial(ParamSched, field='lr', f=ann, T_max=T, relative=rel)
        sc = lrs if rel else [1.]*len(lrs)
        return (f,lrs,[s*min(a, b) for s in sc],[s*max(a, b) for s in sc],T,
                lambda i: sc[i]*L/T)
    E,spe = draw(st.integers(1, 10)),draw(st.integers(1, 10)); W = draw(st.integers(0, E - 1)); C = draw(st.integers(0, E - W - 1))
    k,mr,wr = draw(ks),draw(st.floats(0., 1.)),draw(st.floats(0., 1.))
    f = partial(CosineLrScheduler, total_num_epochs=E, num_update_steps_per_epoch=spe, k_decay=k, min_lr_ratio=mr,
                num_warmup_epochs=W, warmup_starting_lr_ratio=wr, num_cooldown_epochs=C)
    D = (E - W - C)*spe
    bound = lambda i: max(lrs[i]*(1 - wr)/(W*spe) if W else 0., lrs[i]*(1 - mr)*math.pi/2*k/D)
    return f,lrs,[lr*min(mr, wr if W else 1.) for lr in lrs],lrs,E*spe,bound

cases = st.one_of(warmup_decay_cases(), other_cases())

@settings(max_examples=150, deadline=None)
@given(case=cases)
def test_inside_levels_continuous_and_clamped(case):
    f,lrs,lo,hi,end,bound = case
    s = f(groups(lrs))
    vs = values(s, range(end + 6))
    assert s.get_last_lr() == vs[0]                                     # construction leaves f(0)
    for n,v in enumerate(vs):
        for i,x in enumerate(v): assert lo[i]*(1 - 1e-9) - 1e-15 <= x <= hi[i]*(1 + 1e-9) + 1e-15, (n, i, x, lo[i], hi[i])
    for n in range(end, end + 6): assert vs[n] == vs[end]                # held after the end
    assert values(s, [end + 10**6, -3]) == [vs[end], vs[0]]
    for i in range(len(lrs)):
        b = bound(i) if bound else None
        if b is None: continue
        d = max((abs(vs[n+1][i] - vs[n][i]) for n in range(end)), default=0.)
        assert d <= b*(1 + 1e-9) + 1e-15, (i, d, b)

@settings(max_examples=80, deadline=None)
@given(case=cases, k=st.integers(0, 60), m=st.integers(1, 60), opt_first=st.booleans())
def test_resume_identical_trajectory(case, k, m, opt_first):
    "Train k updates, save optimizer + scheduler, rebuild (optimizer state loaded before or after), continue m updates."
    f,lrs = case[0],case[1]
    model = nn.ModuleList(nn.Linear(3, 1) for _ in lrs)
    def make_opt(mdl): return optim.AdamW([{'params': l.parameters(), 'lr': lr} for l,lr in zip(mdl, lrs)], weight_decay=0.01)
    opt = make_opt(model); s = f(opt)
    x = torch.randn(4, 3)
    def update(o, mdl, sch):
        o.zero_grad(); sum(l(x).pow(2).mean() for l in mdl).backward(); o.step(); sch.step()
    for _ in range(k): update(opt, model, s)
    sd_opt,sd_s = deepcopy(opt.state_dict()),deepcopy(s.state_dict())
    model2 = deepcopy(model); opt2 = make_opt(model2)
    if opt_first: opt2.load_state_dict(sd_opt); s2 = f(opt2)
    else: s2 = f(opt2); opt2.load_state_dict(sd_opt)
    s2.load_state_dict(sd_s)
    for _ in range(m):
        assert [pg['lr'] for pg in opt2.param_groups] == [pg['lr'] for pg in opt.param_groups]
        update(opt, model, s); update(opt2, model2, s2)
    assert all(torch.equal(a, b) for a,b in zip(model.parameters(), model2.parameters()))

def test_proportion_follows_each_group_and_resumes():
    o = groups([0.1, 0.01])
    l = CosineSched(o, T_max=20, min_ratio=0.1)
    p = ProportionScheduler(l, max_lr=0.1, min_lr=0.01, max_value=0.05, min_value=0.01)
    assert p.fields == ('rho',)
    assert [pg['rho'] for pg in o.param_groups] == [0.05, 0.01]
    seen = []
    for _ in range(25):
        l.step(); p.step(); seen.append([pg['rho'] for pg in o.param_groups])
    assert all(0.01 <= v <= 0.05 for r in seen for v in r)
    assert close(seen[-1][0], 0.01) and max(abs(a[0] - b[0]) for a,b in zip(seen, seen[1:])) < 0.05/20*math.pi/2*1.01
    o.param_groups[0]['lr'] = 5.  # far above max_lr: clamped
    assert p.get_updated_values(0)[0] == 0.05

def test_proportion_resumes():
    def build(o):
        l = CosineSched(o, T_max=30, min_ratio=0.1)
        return l,ProportionScheduler(l, max_lr=0.1, min_lr=0.01, max_value=0.05, min_value=0.01)
    o = groups([0.1, 0.03]); l,p = build(o)
    for _ in range(12): o.step(); l.step(); p.step()
    sd = deepcopy((o.state_dict(), l.state_dict(), p.state_dict()))
    o2 = groups([0.1, 0.03]); l2,p2 = build(o2)
    o2.load_state_dict(sd[0]); l2.load_state_dict(sd[1]); p2.load_state_dict(sd[2])
    for _ in range(25):
        assert [(g['lr'], g['rho']) for g in o.param_groups] == [(g['lr'], g['rho']) for g in o2.param_groups]
        for oo,ll,pp in ((o, l, p), (o2, l2, p2)): oo.step(); ll.step(); pp.step()


# ---------------------------------------------------------------- specific behaviour
def test_per_group_levels_and_max_lr():
    o = groups([1e-3, 1e-2, 1e-1])
    s = CosineSched(o, T_max=100, warmup_pct=0.1, min_ratio=0.1, init_ratio=0.01)
    assert np.allclose(s.get_last_lr(), [1e-5, 1e-4, 1e-3])
    assert np.allclose(s.get_updated_values(10), [1e-3, 1e-2, 1e-1]) and np.allclose(s.get_updated_values(100), [1e-4, 1e-3, 1e-2])
    s = LinearSched(groups([1., 1.]), T_max=10, max_lr=[0.1, 0.2], min_lr=[0.01, 0.])
    assert np.allclose(s.get_updated_values(0), [0.1, 0.2]) and np.allclose(s.get_updated_values(10), [0.01, 0.])

def test_warmup_as_long_as_the_run():
    "T_max == warmup: no division by zero; the floor at T_max."
    for cls in (LinearSched, CosineSched, RexSched, partial(PolySched, power=2.), partial(WSDSched, decay_steps=0)):
        s = cls(groups([0.01]), T_max=10, warmup_steps=10)
        assert np.allclose([s.get_updated_values(n)[0] for n in (0, 5, 9, 10, 11)], [0, 0.005, 0.009, 0, 0])

def test_k_decay():
    a,b = CosineSched(groups(), T_max=100),CosineSched(groups(), T_max=100, k_decay=3.)
    assert b.get_updated_values(50)[0] > a.get_updated_values(50)[0]
    assert b.get_updated_values(100) == a.get_updated_values(100) and b.get_updated_values(0) == a.get_updated_values(0)

def test_restarts_layout():
    s = CosineRestartsSched(groups([0.1]), T_max=70, n_cycles=3, cycle_mult=2, warmup_steps=5, warmup_each_cycle=False)
    assert [s.cos_len(c) for c in range(3)] == [9, 19, 37] and [s.cycle_start(c) for c in range(3)] == [0, 14, 33]
    assert s.get_updated_values(14) == [0.1] and s.get_updated_values(70) == [0.]
    s = CosineRestartsSched(groups([0.1]), first_cycle_steps=10, warmup_steps=2, gamma=0.5)
    assert [s.locate(n) for n in (0, 9, 10, 25)] == [(0, 0), (0, 9), (1, 0), (2, 5)]
    assert close(s.get_updated_values(12)[0], 0.05)   # second cycle's peak
    # per-group peaks survive (the original writes min_lr into every group and uses one max_lr)
    s = CosineRestartsSched(groups([0.01, 0.1]), first_cycle_steps=30, warmup_steps=5, min_ratio=0.01)
    assert np.allclose(s.get_updated_values(5), [0.01, 0.1])
    a = po.CosineAnnealingWarmupRestarts(groups([0.01, 0.1]), first_cycle_steps=30, max_lr=0.01, min_lr=1e-4, warmup_steps=5)
    for _ in range(5): a.step()
    assert [pg['lr'] for pg in a.optimizer.param_groups] == [0.01, 0.01]

def test_annealers():
    assert close(SchedCos(1., 0.)(0.5), 0.5) and SchedCos(1., 0.)(1.5) == 0. and SchedLin(0., 1.)(-1) == 0.
    assert close(SchedExp(1e-4, 1e-2)(0.5), 1e-3) and close(SchedPoly(0., 1., 2.)(0.5), 0.25) and SchedNo(3.)(0.7) == 3.
    one = combine_scheds([0.25, 0.75], [SchedCos(0.1, 1.), SchedCos(1., 0.)])
    assert np.allclose([one(p) for p in (0, 0.25, 0.625, 1, 2)], [0.1, 1., 0.5, 0., 0.])
    assert 'SchedCos' in repr(one)

def test_param_sched_any_field():
    o = optim.AdamW(nn.Linear(2, 1).parameters(), lr=1e-2, weight_decay=0.1, betas=(0.9, 0.99))
    w = ParamSched(o, 'weight_decay', SchedCos(0.1, 1e-3), T_max=10)
    b2 = ParamSched(o, 'beta2', SchedLin(0.95, 0.999), T_max=10)
    assert w.fields == ('weight_decay',) and b2.fields == ('beta2',)
    assert o.param_groups[0]['betas'] == (0.9, 0.95)
    for _ in range(12): w.step(); b2.step()
    assert close(o.param_groups[0]['weight_decay'], 1e-3) and o.param_groups[0]['betas'] == (0.9, 0.999)
    # relative: a multiplier of each group's base value (a group with no weight decay keeps none)
    o = optim.AdamW([{'params': [nn.Parameter(torch.zeros(1))], 'weight_decay': 0.1},
                     {'params': [nn.Parameter(torch.zeros(1))], 'weight_decay': 0.}])
    s = ParamSched(o, 'weight_decay', SchedLin(1., 0.5), T_max=4, relative=True)
    for _ in range(4): s.step()
    assert [pg['weight_decay'] for pg in o.param_groups] == [0.05, 0.]
    s = ParamSched(groups([1., 1.]), 'lr', [SchedNo(1.), SchedNo(2.)], T_max=3)
    assert s.get_last_lr() == [1., 2.]

def test_create_scheduler_fn():
    f = CosineLrScheduler.create_scheduler_fn(num_warmup_epochs=1)
    assert 'total_num_epochs' not in f.keywords and 'num_update_steps_per_epoch' not in f.keywords
    assert f(groups(), total_num_epochs=3, num_update_steps_per_epoch=5).total_iterations == 15
    from pytorch_accelerated import TrainerPlaceholderValues as P
    f = CosineLrScheduler.create_scheduler_fn(total_num_epochs=P.NUM_EPOCHS, num_update_steps_per_epoch=4)
    assert 'total_num_epochs' not in f.keywords and f.keywords['num_update_steps_per_epoch'] == 4
    with pytest.raises(ValueError, match='total_num_epochs='):
        CosineLrScheduler(groups(), P.NUM_EPOCHS, 4)

def test_cosine_lr_fixes():
    "The four documented differences from pytorch-accelerated, with the package beside."
    w1 = dict(lr_min=1e-4, num_warmup_epochs=3)
    ours = CosineLrScheduler(groups(), 10, 10, **w1)
    theirs = pas.CosineLrScheduler(groups(), 10, 10, **w1)
    # 1. the cosine spans warmup end .. T: floor first reached at T (theirs at T - 2W + ... = 70)
    assert ours.get_updated_values(99)[0] > 1e-4 and ours.get_updated_values(100)[0] == 1e-4
    theirs.step_update(70); assert lr0(theirs.optimizer) == 1e-4
    # 2. ratio warmup even, ending at base
    w2 = dict(lr_min=1e-4, num_warmup_epochs=2, warmup_starting_lr_ratio=0.1)
    ours = CosineLrScheduler(groups(), 10, 10, **w2)
    v = [ours.get_updated_values(n)[0] for n in range(21)]
    assert np.allclose(np.diff(v), 0.009/20) and v[20] == 0.01
    theirs = pas.CosineLrScheduler(groups(), 10, 10, **w2)
    theirs.step_update(19); assert lr0(theirs.optimizer) > 0.0104
    # 3. construction applies ratio x base
    assert lr0(ours.optimizer) == 0.001 and lr0(pas.CosineLrScheduler(groups(), 10, 10, **w2).optimizer) == 1e-6
    # 4. resume keeps the lr
    for cls,keeps in ((CosineLrScheduler, True), (pas.CosineLrScheduler, False)):
        o = groups(); s = cls(o, 10, 10, **w1)
        for _ in range(35): o.step(); s.step()
        o2 = groups(); o2.load_state_dict(o.state_dict()); s2 = cls(o2, 10, 10, **w1); s2.load_state_dict(s.state_dict())
        assert (lr0(o2) == lr0(o)) == keeps


# ---------------------------------------------------------------- validation: the message names the parameter
BAD = [
    (LinearSched, dict(), 'T_max=None'),
    (LinearSched, dict(T_max=0), 'T_max=0'),
    (LinearSched, dict(T_max=2.5), 'T_max=2.5'),
    (CosineSched, dict(T_max=10, warmup_steps=11), 'warmup_steps=11'),
    (CosineSched, dict(T_max=10, warmup_steps=-1), 'warmup_steps=-1'),
    (CosineSched, dict(T_max=10, warmup_pct=1.5), 'warmup_pct=1.5'),
    (CosineSched, dict(T_max=10, warmup_steps=2, warmup_pct=0.5), 'warmup_pct=0.5'),
    (CosineSched, dict(T_max=10, min_lr=0.5), 'min_lr=0.5'),
    (CosineSched, dict(T_max=10, min_ratio=1.5), 'min_ratio=1.5'),
    (CosineSched, dict(T_max=10, init_lr=-1.), 'init_lr=-1.0'),
    (CosineSched, dict(T_max=10, init_ratio=2.), 'init_ratio=2.0'),
    (CosineSched, dict(T_max=10, max_lr=[0.1, 0.2]), 'max_lr=[0.1, 0.2]'),
    (CosineSched, dict(T_max=10, k_decay=0.), 'k_decay=0.0'),
    (CosineSched, dict(T_max=10, max_lr=float('nan')), 'max_lr=nan'),
    (PolySched, dict(T_max=10, power=-1.), 'power=-1.0'),
    (WSDSched, dict(T_max=10, decay_steps=11), 'decay_steps=11'),
    (WSDSched, dict(T_max=10, warmup_steps=5, decay_pct=0.6), 'decay_pct=0.6'),
    (WSDSched, dict(T_max=10, decay_shape='exp'), "decay_shape='exp'"),
    (CosineRestartsSched, dict(T_max=10), 'first_cycle_steps=None'),
    (CosineRestartsSched, dict(first_cycle_steps=10, n_cycles=2), 'first_cycle_steps=10'),
    (CosineRestartsSched, dict(first_cycle_steps=0), 'first_cycle_steps=0'),
    (CosineRestartsSched, dict(first_cycle_steps=10, warmup_steps=10), 'warmup_steps=10'),
    (CosineRestartsSched, dict(first_cycle_steps=10, cycle_mult=0), 'cycle_mult=0'),
    (CosineRestartsSched, dict(first_cycle_steps=10, gamma=1.5), 'gamma=1.5'),
    (CosineRestartsSched, dict(n_cycles=2), 'n_cycles=2'),
    (CosineRestartsSched, dict(T_max=5, n_cycles=2, warmup_steps=2), 'n_cycles=2'),
    (CosineRestartsSched, dict(T_max=6, n_cycles=3, cycle_mult=10.), 'cycle_mult=10.0'),
    (ChebyshevSched, dict(T_max=8, small_m=0.), 'small_m=0.0'),
    (ChebyshevSched, dict(T_max=8, small_m=0.5, big_m=0.4), 'big_m=0.4'),
    (ParamSched, dict(field='lr', f=None, T_max=5), 'f=None'),
    (ParamSched, dict(field='lr', f=[SchedNo(1.)] * 2, T_max=5), 'f=['),
    (ParamSched, dict(field='gamma', f=SchedNo(1.), T_max=5), "field='gamma'"),
    (ParamSched, dict(field='lr', f=SchedNo(1.)), 'T_max=None'),
    (partial(ProportionScheduler, max_lr=0.1), dict(min_lr=0.2), 'min_lr=0.2'),
    (partial(ProportionScheduler, max_lr=-0.1), dict(), 'max_lr=-0.1'),
    (CosineLrScheduler, dict(total_num_epochs=None, num_update_steps_per_epoch=5), 'total_num_epochs=None'),
    (CosineLrScheduler, dict(total_num_epochs=3, num_update_steps_per_epoch=0), 'num_update_steps_per_epoch=0'),
    (CosineLrScheduler, dict(total_num_epochs=3, num_update_steps_per_epoch=5, num_warmup_epochs=2, num_cooldown_epochs=2),
     'num_warmup_epochs=2'),
    (CosineLrScheduler, dict(total_num_epochs=3, num_update_steps_per_epoch=5, lr_min=-1.), 'lr_min=-1.0'),
    (CosineLrScheduler, dict(total_num_epochs=3, num_update_steps_per_epoch=5, lr_min=1.), 'lr_min=1.0'),
    (CosineLrScheduler, dict(total_num_epochs=3, num_update_steps_per_epoch=5, min_lr_ratio=2.), 'min_lr_ratio=2.0'),
    (CosineLrScheduler, dict(total_num_epochs=3, num_update_steps_per_epoch=5, k_decay=-1.), 'k_decay=-1.0'),
    (CosineLrScheduler, dict(total_num_epochs=3, num_update_steps_per_epoch=5, warmup_starting_lr_ratio=1.5),
     'warmup_starting_lr_ratio=1.5'),
]

@pytest.mark.parametrize('cls,kw,msg', BAD)
def test_bad_arguments(cls, kw, msg):
    with pytest.raises(ValueError) as e: cls(groups([0.1]), **kw)
    assert msg in str(e.value), str(e.value)

@pytest.mark.parametrize('f,msg', [
    (lambda: SchedExp(0., 1.), 'start=0.0'), (lambda: SchedPoly(0., 1., 0.), 'power=0.0'),
    (lambda: SchedLin(float('inf'), 1.), 'start=inf'),
    (lambda: combine_scheds([0.5, 0.6], [SchedLin(0, 1), SchedNo(1)]), 'pcts=[0.5, 0.6]'),
    (lambda: combine_scheds([1.], [SchedLin(0, 1), SchedNo(1)]), 'pcts=[1.0]'),
    (lambda: combine_scheds([0.5, 0.5], [SchedLin(0, 1), 3]), 'scheds[1]=3'),
    (lambda: fractal_perm(6), 'n=6'),
])
def test_bad_annealers(f, msg):
    with pytest.raises(ValueError) as e: f()
    assert msg in str(e.value), str(e.value)

def test_proportion_needs_optimizer():
    with pytest.raises(TypeError, match=r'ProportionScheduler \(of an optimizer, or of a scheduler with .optimizer\) needs a torch optimizer, got int'):
        ProportionScheduler(3, max_lr=0.1)


# ---------------------------------------------------------------- param groups
class Block(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.ln1,self.attn = nn.LayerNorm(d),nn.MultiheadAttention(d, 2, batch_first=True)
        self.ln2,self.mlp = nn.LayerNorm(d),nn.Sequential(nn.Linear(d, 2*d), nn.GELU(), nn.Linear(2*d, d))
    def forward(self, x):
        h = self.ln1(x); x = x + self.attn(h, h, h)[0]
        return x + self.mlp(self.ln2(x))

class TinyLM(nn.Module):
    def __init__(self, vocab=50, d=16, n_layers=3, ctx=8):
        super().__init__()
        self.emb,self.pos = nn.Embedding(vocab, d),nn.Parameter(torch.zeros(ctx, d))
        self.blocks = nn.ModuleList(Block(d) for _ in range(n_layers))
        self.norm,self.head = nn.LayerNorm(d),nn.Linear(d, vocab)
    def forward(self, x):
        x = self.emb(x) + self.pos[:x.shape[1]]
        for b in self.blocks: x = b(x)
        return self.head(self.norm(x))

def conv_net():
    "The miniai conv net with BatchNorm (30,402 parameters)."
    from miniai.init import get_model
    m = get_model(nn.ReLU, norm=nn.BatchNorm2d)
    assert sum(p.numel() for p in m.parameters()) == 30402
    return m

def check_complete(model, pgs):
    ids = [id(p) for g in pgs for p in g['params']]
    assert len(ids) == len(set(ids)) == len({id(p) for p in model.parameters()})

def no_wd_names(model, pgs):
    named = dict(model.named_parameters())
    return {n for n,p in named.items() if any(p is q for g in pgs if g['weight_decay'] == 0 for q in g['params'])}

def test_param_groups_transformer():
    lm = TinyLM()
    assert [n for n,_ in layer_units(lm)] == ['(own)', 'emb', 'blocks.0', 'blocks.1', 'blocks.2', 'norm', 'head']
    pgs = param_groups(lm, lr=slice(1e-4, 1e-2), n_groups=3, wd=0.05)
    check_complete(lm, pgs)
    assert np.allclose([g['lr'] for g in pgs], [1e-4, 1e-3, 1e-3, 1e-2, 1e-2])
    assert {g['weight_decay'] for g in pgs} == {0.05, 0.}
    assert no_wd_names(lm, pgs) == {n for n,_ in lm.named_parameters() if n.endswith('bias') or '.ln' in n or n.startswith('norm.')}
    pgs = param_groups(lm, lr=[1, 2, 3], split=[r'^(emb|pos)', r'blocks', ''])
    assert [g['lr'] for g in pgs] == [1, 2, 2, 3, 3]
    check_complete(lm, pgs)
    pgs = param_groups(lm, lr=slice(1e-2), split=lambda m: [m.emb, m.blocks, m.head, m.norm, [m.pos]])
    check_complete(lm, pgs)
    assert [g['lr'] for g in pgs if g['weight_decay']] == [1e-3, 1e-3, 1e-3, 1e-2]
    with pytest.raises(ValueError, match="split=.*'norm.weight'"): param_groups(lm, split=[r'^(emb|pos)', r'blocks', r'head'])
    with pytest.raises(ValueError, match="split=.*no group"): param_groups(lm, split=lambda m: [m.emb, m.blocks])
    with pytest.raises(ValueError, match='n_groups=8'): param_groups(lm, n_groups=8)
    with pytest.raises(ValueError, match=r'lr=\[1, 2\]'): param_groups(lm, lr=[1, 2], n_groups=3)
    with pytest.raises(ValueError, match='wd=-1'): param_groups(lm, wd=-1)
    opt = optim.AdamW(param_groups(lm, lr=slice(1e-4, 1e-2)), lr=1e-3)
    lm(torch.randint(0, 50, (2, 8))).sum().backward(); opt.step()

def test_param_groups_conv_net():
    m = conv_net()
    pgs = param_groups(m, lr=slice(1e-3, 1e-1))
    check_complete(m, pgs)
    n = len(layer_units(m))
    lrs = sorted({g['lr'] for g in pgs})
    assert len(lrs) == n and np.allclose(lrs, np.geomspace(1e-3, 1e-1, n))
    bn = {id(p) for mod in m.modules() if isinstance(mod, nn.BatchNorm2d) for p in mod.parameters()}
    biases = {id(p) for nm,p in m.named_parameters() if nm.endswith('bias')}
    assert {id(p) for g in pgs if g['weight_decay'] == 0 for p in g['params']} == bn | biases == no_wd_params(m)
    assert all(g['weight_decay'] == 0.01 for g in param_groups(m, no_wd_bias_norm=False))
    pgs2 = param_groups(m, lr=0.1, n_groups=2)
    assert len({g['lr'] for g in pgs2}) == 1 and len(pgs2) == 4

def test_param_groups_shared_and_wrapped():
    lin = nn.Linear(4, 4)
    m = nn.Sequential(nn.Sequential(lin, nn.GroupNorm(2, 4), lin, nn.Linear(4, 2)))   # a wrapper, a shared layer
    assert len(layer_units(m)) == 3   # the shared layer is one unit (torch lists a shared module once)
    pgs = param_groups(m, lr=slice(1e-3, 1e-1))
    check_complete(m, pgs)

def test_group_opt_func():
    m = TinyLM()
    f = group_opt_func(m, optim.AdamW, lr_mult=slice(0.01, 1.), n_groups=2, betas=(0.9, 0.95))
    opt = f(m.parameters(), 0.1)
    assert np.allclose(sorted({g['lr'] for g in opt.param_groups}), [1e-3, 0.1])
    assert opt.param_groups[0]['betas'] == (0.9, 0.95)
    with pytest.raises(ValueError, match='not those of the model'): f(nn.Linear(2, 2).parameters(), 0.1)


# ---------------------------------------------------------------- lengths cost O(log), never O(length) (issue 8)
# The implementations before issue 8, kept only as references: the new lazy code must give the same numbers.
def _reference_chebyshev_mults(T_max, small_m=0.05, big_m=1., fractal=True, pow2=True):
    "The old ChebyshevSched's list of multipliers (built in full)."
    P = 1 << (T_max - 1).bit_length()
    n = P if pow2 else T_max
    steps = chebyshev_steps(n, small_m, big_m)
    return [steps[i] for i in ([i for i in fractal_perm(P) if i < n] if fractal else range(n))]

def _reference_fit_cycles(T_max, k, W, each, mult):
    "The old layout of CosineRestartsSched(n_cycles=k): (starts, cosine lengths), or None where it refused."
    warm = lambda c: W if (each or c == 0) else 0
    tot = T_max - sum(warm(c) for c in range(k))
    if tot < k: return None
    w = [mult**c for c in range(k)]
    ends = [round(tot*sum(w[:c+1])/sum(w)) for c in range(k)]
    cos = [e - s for s,e in zip([0] + ends[:-1], ends)]
    if min(cos) < 1: return None
    starts = [0]
    for c in range(k - 1): starts.append(starts[-1] + warm(c) + cos[c])
    return starts, cos

def _reference_open_locate(first, W, each, mult, n):
    "The old cycle lookup of CosineRestartsSched(first_cycle_steps=first): (cycle, position, cosine length)."
    warm = lambda c: W if (each or c == 0) else 0
    starts,cos = [0],[first - W]
    while starts[-1] + warm(len(starts) - 1) + cos[-1] <= n:
        c = len(starts) - 1
        starts.append(starts[-1] + warm(c) + cos[c]); cos.append(max(1, int(cos[c]*mult)))
    c = len(starts) - 1
    return c, n - starts[c], cos[c]

def test_chebyshev_equals_reference_grid():
    "Every multiplier, T_max 1..300, all four orders, read forwards, backwards and as the scheduler steps."
    for T in range(1, 301):
        for fractal in (True, False):
            for pow2 in (True, False):
                ref = _reference_chebyshev_mults(T, fractal=fractal, pow2=pow2)
                s = ChebyshevSched(groups([1.]), T_max=T, fractal=fractal, pow2=pow2)
                assert len(s.mults) == len(ref) and list(s.mults) == ref, (T, fractal, pow2)
                assert [s.mults[i] for i in reversed(range(len(ref)))] == ref[::-1]
    s = ChebyshevSched(groups([1.]), T_max=300, pow2=False)
    ref = _reference_chebyshev_mults(300, pow2=False)
    got = []
    for _ in range(305): got.append(lr0(s.optimizer)); s.step()
    assert got == ref + [ref[-1]]*5

@FAST
@given(T=st.integers(1, 3000), small=st.floats(0.01, 0.5), pow2=st.booleans(), idx=st.lists(st.integers(0, 3000), max_size=20))
def test_chebyshev_random_access_equals_reference(T, small, pow2, idx):
    ref = _reference_chebyshev_mults(T, small_m=small, pow2=pow2)
    s = ChebyshevSched(groups([1.]), T_max=T, small_m=small, pow2=pow2)
    assert [s.get_updated_values(n)[0] for n in idx] == [ref[min(n, len(ref) - 1)] for n in idx]

def test_chebyshev_huge_T_max_is_lazy():
    "T_max=10**8 took 115 s and 11.9 GB: now construction and any step cost O(log T) time and O(1) memory."
    for pow2 in (True, False):
        tracemalloc.start(); t0 = time.process_time()
        s = ChebyshevSched(groups([1.]), T_max=10**8, pow2=pow2)
        for n in (1, 12345, 10**8 - 1, 10**8 + 5): s.step_update(n)
        for _ in range(100): s.step()
        dt,peak = time.process_time() - t0,tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert dt < 1. and peak < 1e6, (pow2, dt, peak)
        assert len(s.mults) == (2**27 if pow2 else 10**8)
        assert 1. <= s.mults[-1] <= 20. and 1. <= lr0(s.optimizer) <= 20.

def test_restarts_fit_equals_reference_grid():
    "n_cycles layout, every update's cycle and value: the closed form gives the old loops' numbers (or refuses the same)."
    for T in (1, 5, 10, 24, 70, 100, 333, 1000):
        for k in (1, 2, 3, 5, 10, 37):
            for W in (0, 1, 3):
                for each in (True, False):
                    for m in (0.3, 0.5, 0.9, 1., 1.1, 1.5, 2., 3., 7.3):
                        ref = _reference_fit_cycles(T, k, W, each, m)
                        mk = partial(CosineRestartsSched, groups([0.1]), T_max=T, n_cycles=k, cycle_mult=m, warmup_steps=W,
                                     warmup_each_cycle=each)
                        if ref is None:
                            with pytest.raises(ValueError): mk()
                            continue
                        s = mk()
                        assert ([s.cycle_start(c) for c in range(k)], [s.cos_len(c) for c in range(k)]) == ref, (T, k, W, each, m)
                        starts = ref[0] + [math.inf]
                        for n in range(T + 1):
                            c = next(i for i in range(k) if starts[i + 1] > n)
                            assert s.locate(n) == (c, n - starts[c])

@FAST
@given(T=st.integers(1, 5000), k=st.integers(1, 60), W=st.integers(0, 20), each=st.booleans(),
       m=st.floats(0.2, 5.), ns=st.lists(st.integers(0, 5000), max_size=10))
def test_restarts_fit_equals_reference(T, k, W, each, m, ns):
    ref = _reference_fit_cycles(T, k, W, each, m)
    mk = partial(CosineRestartsSched, groups([0.1]), T_max=T, n_cycles=k, cycle_mult=m, warmup_steps=W, warmup_each_cycle=each)
    if ref is None:
        with pytest.raises(ValueError, match='n_cycles=|cycle_mult='): mk()
        return
    s = mk()
    assert ([s.cycle_start(c) for c in range(k)], [s.cos_len(c) for c in range(k)]) == ref

@FAST
@given(first=st.integers(1, 40), W=st.integers(0, 5), each=st.booleans(),
       m=st.sampled_from([0.1, 0.5, 0.9, 1., 1.01, 1.05, 1.1, 1.5, 2., 3.7, 1e200]), ns=st.lists(st.integers(0, 10**6), max_size=30))
def test_restarts_open_equals_reference(first, W, each, m, ns):
    "first_cycle_steps mode: pytorch_optimizer's int(previous × cycle_mult) lengths, fixed points jumped over."
    assume(W < first)
    s = CosineRestartsSched(groups([0.1]), first_cycle_steps=first, cycle_mult=m, warmup_steps=W, warmup_each_cycle=each)
    for n in ns + sorted(ns):
        c,pos,cos = _reference_open_locate(first, W, each, m, n)
        assert s.locate(n) == (c, pos) and s.cos_len(c) == cos

def test_restarts_huge_lengths_are_cheap():
    "(T_max=1e9, n_cycles=1e6) never answered (quadratic); n_cycles=1e9 looped before refusing; cycle_mult=1e200 overflowed."
    t0 = time.process_time()
    s = CosineRestartsSched(groups([0.1]), T_max=10**9, n_cycles=10**6, warmup_steps=3)
    for n in (0, 999, 10**6, 5*10**8 + 17, 10**9, 10**9 + 5): s.step_update(n)
    c,pos = s.locate(5*10**8 + 17)
    assert s.cycle_start(c) + pos == 5*10**8 + 17 and 0 <= pos < s._len(c)
    assert s.cycle_start(10**6 - 1) + s._len(10**6 - 1) == 10**9  # the last cycle ends exactly at T_max
    with pytest.raises(ValueError, match=r'n_cycles=1000000000: T_max=100 leaves'):
        CosineRestartsSched(groups([0.1]), T_max=100, n_cycles=10**9, warmup_steps=1)
    with pytest.raises(ValueError, match='cycle_mult=1e\\+200: leaves a cycle without updates'):
        CosineRestartsSched(groups([0.1]), T_max=1000, n_cycles=3, cycle_mult=1e200)
    s = CosineRestartsSched(groups([0.1]), T_max=10**12, n_cycles=40, cycle_mult=1.7)
    s.step_update(10**12 // 2)
    for m in (1., 0.5, 1.05):  # lengths reach a fixed point: found by division, the table stays short
        s = CosineRestartsSched(groups([0.1]), first_cycle_steps=10, cycle_mult=m, warmup_steps=2)
        s.step_update(2**53)
        assert len(s._starts) < 40 and s._period is not None
    s = CosineRestartsSched(groups([0.1]), first_cycle_steps=10, cycle_mult=2.)
    s.step_update(2**53); assert len(s._starts) < 60
    s = CosineRestartsSched(groups([0.1]), first_cycle_steps=10, cycle_mult=1e200)
    s.step_update(2**53); assert s.locate(2**53) == (1, 2**53 - 10)
    assert time.process_time() - t0 < 1.
    with pytest.raises(ValueError, match='num_updates='): s.step_update(2**53 + 1)
    with pytest.raises(ValueError, match=r'T_max=9007199254740993: must be <= 2\*\*53'):
        CosineRestartsSched(groups([0.1]), T_max=2**53 + 1, n_cycles=2)
    with pytest.raises(ValueError, match='first_cycle_steps='):
        CosineRestartsSched(groups([0.1]), first_cycle_steps=2**60)


# ---------------------------------------------------------------- every bad input refused early and clearly (issue 8)
@pytest.mark.parametrize('cls,kw,msg', [
    (ChebyshevSched, dict(T_max=8, fractal='False'), "fractal='False': must be True or False"),
    (ChebyshevSched, dict(T_max=8, pow2=1), 'pow2=1: must be True or False'),
    (CosineRestartsSched, dict(first_cycle_steps=8, warmup_each_cycle='no'), "warmup_each_cycle='no'"),
    (ParamSched, dict(f=SchedNo(1.), T_max=5, relative=None), 'relative=None'),
    (WSDSched, dict(T_max=10, decay_steps=0.), 'decay_steps=0.0: must be an int'),
    (WSDSched, dict(T_max=10, decay_steps=False), 'decay_steps=False: must be an int'),
    (WSDSched, dict(T_max=10, decay_steps=[]), 'decay_steps=[]: must be an int'),
    (WSDSched, dict(T_max=10, decay_steps=2.5), 'decay_steps=2.5: must be an int'),
    (CosineSched, dict(T_max=10, warmup_steps=0., warmup_pct=0.1), 'warmup_steps=0.0: must be an int'),
    (ParamSched, dict(field='betas', f=SchedNo(0.9), T_max=5), "field='betas': param group 0 holds (0.9, 0.999)"),
    (CosineSched, dict(T_max=10, param_group_field='params'), "param_group_field='params'"),
    (partial(ProportionScheduler, max_lr=0.1), dict(field='betas'), "field='betas': param group 0 holds"),
    (partial(ProportionScheduler, max_lr=0.1), dict(field='params'), "field='params'"),
    (partial(ProportionScheduler, max_lr=0.1), dict(field=3), 'field=3'),
    (partial(ProportionScheduler, max_lr=0.1), dict(lr_field='bogus'), "lr_field='bogus'"),
    (partial(ProportionScheduler, max_lr=0.1), dict(lr_field='betas'), "lr_field='betas'"),
    (ChebyshevSched, dict(T_max=2**53 + 1), 'T_max=9007199254740993'),
])
def test_bad_arguments_issue8(cls, kw, msg):
    with pytest.raises(ValueError) as e: cls(groups([0.1], opt_func=optim.Adam), **kw)
    assert msg in str(e.value), str(e.value)

def test_allowed_fields_named():
    with pytest.raises(ValueError) as e: ProportionScheduler(groups([0.1]), max_lr=0.1, lr_field='bogus')
    assert "'lr'" in str(e.value) and "'momentum'" in str(e.value)  # the group's fields
    with pytest.raises(ValueError) as e: ProportionScheduler(groups([0.1], opt_func=optim.Adam), max_lr=0.1, field='betas')
    assert "'beta1'" in str(e.value)

def test_wsd_decay_steps_rule():
    "decay_steps is None (default: 20%) or an int >= 0; 0 means no decay."
    assert WSDSched(groups(), T_max=10, decay_steps=0).decay_len == 0
    assert WSDSched(groups(), T_max=10).decay_len == 2
    assert WSDSched(groups(), T_max=10, decay_steps=None, decay_pct=0.5).decay_len == 5
    assert CosineSched(groups(), T_max=10, warmup_steps=None, warmup_pct=0.3).warmup == 3

def test_proportion_follows_beta1():
    o = groups([0.1], opt_func=optim.Adam, betas=(0.9, 0.99))
    s = ProportionScheduler(o, max_lr=1., min_lr=0., max_value=1., min_value=0., field='weight_decay', lr_field='beta1')
    assert close(o.param_groups[0]['weight_decay'], 0.9) and 'beta1' not in o.param_groups[0]

@pytest.mark.parametrize('bad', [float('nan'), float('inf'), -float('inf'), 'x', None, True])
@pytest.mark.parametrize('relative', [False, True])
def test_param_sched_refuses_non_finite(bad, relative):
    "An annealer giving nan (or not a number) raises naming the position and value; the optimizer keeps its values."
    o = groups([0.1, 0.2])
    s = ParamSched(o, 'lr', lambda pos: 0.5 if pos < 0.5 else bad, T_max=10, relative=relative)
    for _ in range(4): s.step()
    before = [pg['lr'] for pg in o.param_groups]
    with pytest.raises(ValueError) as e: s.step_update(5)
    assert 'pos=0.5' in str(e.value) and f'lr={bad!r}' in str(e.value) and 'update 5' in str(e.value)
    assert [pg['lr'] for pg in o.param_groups] == before and not any(math.isnan(v) for v in before)

def _no_groups():
    o = groups(); o.param_groups.clear(); return o

@pytest.mark.parametrize('make', [
    partial(CosineSched, T_max=10), partial(WSDSched, T_max=10), partial(CosineRestartsSched, first_cycle_steps=5),
    partial(ChebyshevSched, T_max=8), partial(ParamSched, f=SchedNo(1.), T_max=5), partial(ProportionScheduler, max_lr=0.1),
    partial(CosineLrScheduler, total_num_epochs=2, num_update_steps_per_epoch=3)])
def test_no_param_groups(make):
    with pytest.raises(ValueError, match='has no param groups'): make(_no_groups())
    with pytest.raises(TypeError, match='needs a torch optimizer|must be an optimizer'): make(object())

@pytest.mark.parametrize('kw,err,msg', [
    (dict(lr_mult='x'), ValueError, "lr_mult='x'"),
    (dict(lr_mult=[1., 'a']), ValueError, "lr_mult[1]='a'"),
    (dict(lr_mult=[1., 2., 3.]), ValueError, 'needs one lr per layer group'),
    (dict(lr_mult=slice(0, 1.)), ValueError, 'lr_mult.start=0'),
    (dict(lr_mult=slice(0.1, 1., 2)), ValueError, 'without a step'),
    (dict(lr_mult=-1.), ValueError, 'lr_mult=-1.0'),
    (dict(n_groups=99), ValueError, 'n_groups=99'),
    (dict(split=['^nothing']), ValueError, 'no pattern matches'),
    (dict(wd=-1.), ValueError, 'wd=-1.0'),
    (dict(no_wd_bias_norm='yes'), ValueError, "no_wd_bias_norm='yes'"),
    (dict(opt_func='adam'), ValueError, "opt_func='adam'"),
])
def test_group_opt_func_checks_when_built(kw, err, msg):
    m = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    with pytest.raises(err) as e: group_opt_func(m, **kw)
    assert msg in str(e.value), str(e.value)

def test_group_opt_func_model_type():
    with pytest.raises(TypeError, match='model='): group_opt_func([nn.Linear(2, 1)])


# ---------------------------------------------------------------- one of each shape (issue 18, steps 3-4)
import ast, pathlib, miniai
from miniai import shapes
from miniai.shapes import cos_shape, linear_shape, poly_shape, rex_shape, sqrt_shape, square_shape, mix, anneal_cos

PKG = pathlib.Path(miniai.__file__).parent

def _cos_calls(path):
    "The source of every `cos(...)` / `math.cos(...)` call in a module."
    tree = ast.parse(path.read_text())
    return [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.Call)
            and getattr(n.func, 'attr', getattr(n.func, 'id', None)) == 'cos']

def test_the_cosine_is_written_once():
    "Every schedule's cosine is `shapes.cos_shape`: the only other cosine in the package is the Chebyshev node formula."
    found = {p.name: _cos_calls(p) for p in sorted(PKG.glob('*.py'))}
    found = {k: v for k,v in found.items() if v}
    assert found == {'shapes.py': ['cos(pi * p)'], 'compat.py': ['math.cos((i + 0.5) * math.pi / n)']}, found

def test_schedulers_use_the_shapes():
    "The family's decays are the shapes themselves: the same number for every p, not a copy of the formula."
    o = groups([1.])
    ps = [i/97 for i in range(98)]
    for s,f in ((LinearSched(o, T_max=10), linear_shape), (CosineSched(o, T_max=10), cos_shape), (RexSched(o, T_max=10), rex_shape),
                (PolySched(o, T_max=10, power=2.5), lambda p: poly_shape(p, 2.5))):
        assert [s.decay(p) for p in ps] == [f(p) for p in ps], type(s).__name__
    for k,f in (('1-sqrt', sqrt_shape), ('1-square', square_shape), ('cosine', cos_shape), ('linear', linear_shape)):
        s = WSDSched(o, T_max=10, decay_shape=k)
        assert [s.decay(p) for p in ps] == [f(p) for p in ps], k
    assert [SchedCos(0.95, 0.85)(p) for p in ps] == [anneal_cos(0.95, 0.85, p) for p in ps]

def test_shapes_end_exactly():
    "Every shape is exactly 1 at p=0 and 0 at p=1, so peaks and floors are reached without rounding."
    for f in list(shapes.SHAPES.values()) + [lambda p: poly_shape(p, 0.3)]:
        assert (f(0.), f(1.)) == (1., 0.)
    assert mix(1e-3, 1e-2, 1.) == 1e-2 and 1e-3 + (1e-2 - 1e-3) != 1e-2  # the rounding mix avoids
    assert [SchedCos(0.95, 0.85)(p) for p in (0., 1.)] == [0.95, 0.85]

def test_moved_names_keep_their_old_import_path():
    "The borrowed names live in miniai.compat and the param groups in miniai.groups; miniai.schedfamily still gives them."
    import miniai.schedfamily as sf, miniai.compat as compat, miniai.groups as grp, miniai.warmupdecay as wd
    for nm in ('CosineLrScheduler', 'ProportionScheduler', 'ChebyshevSched', 'chebyshev_steps', 'fractal_perm'):
        assert getattr(sf, nm) is getattr(compat, nm) and nm in compat.__all__ and nm not in sf.__all__
    for nm in ('param_groups', 'layer_units', 'no_wd_params', 'group_opt_func', 'NORM_TYPES', '_lrs'):
        assert getattr(sf, nm) is getattr(grp, nm)
    assert sf.WarmupDecaySched is wd.WarmupDecaySched and issubclass(compat.CosineLrScheduler, wd.WarmupDecaySched)

def test_no_patched_methods_in_the_schedulers():
    "CosineRestartsSched's methods are in its class body (no fastcore @patch anywhere in the scheduler modules)."
    for nm in ('schedbase', 'shapes', 'sched', 'schedcb', 'warmupdecay', 'schedfamily', 'compat', 'groups'):
        assert '@patch' not in (PKG/f'{nm}.py').read_text(), nm
    for m in ('_F', '_end', '_fit_cycles', 'cos_len', 'cycle_start', '_extend', 'locate', 'get_updated_values'):
        assert m in vars(CosineRestartsSched), m

def test_chebyshev_list_below_the_bound_lazy_above():
    "Up to 2**16 multipliers are one precomputed list, equal to the lazy sequence; beyond, lazy; neither goes in the state."
    from miniai.compat import _ChebMults, _EAGER_MAX
    for T,pow2 in ((5, True), (300, False), (2**16, True), (40000, False)):
        s = ChebyshevSched(groups([1.]), T_max=T, pow2=pow2)
        P = 1 << (T - 1).bit_length(); n = P if pow2 else T
        assert type(s.mults) is list and s.mults == list(_ChebMults(n, P, 0.05, 1., True)), T
        assert 'mults' not in s.state_dict()
    big = ChebyshevSched(groups([1.]), T_max=_EAGER_MAX + 1)
    assert isinstance(big.mults, _ChebMults) and 'mults' not in big.state_dict()
    s2 = ChebyshevSched(groups([1.]), T_max=300, pow2=False)
    for _ in range(17): s2.step()
    s3 = ChebyshevSched(groups([1.]), T_max=300, pow2=False); s3.load_state_dict(deepcopy(s2.state_dict()))
    assert lr0(s3.optimizer) == lr0(s2.optimizer) == _reference_chebyshev_mults(300, pow2=False)[17]

def test_cosine_lr_all_cooldown_is_the_floor():
    "pytorch-accelerated's CosineLrScheduler with every epoch a cooldown epoch: the floor from the first update, as the package."
    o1,o2 = groups([0.1]),groups([0.1])
    a,b = pas.CosineLrScheduler(o1, 2, 3, num_cooldown_epochs=2, lr_min=1e-3),CosineLrScheduler(o2, 2, 3, num_cooldown_epochs=2, lr_min=1e-3)
    for n in range(8):
        a.step_update(n); b.step_update(n)
        assert close(lr0(o1), lr0(o2)) and lr0(o2) == 1e-3


# ---------------------------------------------------------------- issue 19: the schedulers' long tail
from miniai.compat import deberta_v3_large_lr_scheduler
from pytorch_optimizer.lr_scheduler.experimental.deberta_v3_lr_scheduler import deberta_v3_large_lr_scheduler as po_deberta

def tiny_deberta(d=3, n=4):
    "A module with DeBERTa's parameter names: embeddings, n encoder layers (dense + LayerNorm), a head."
    m = nn.Module(); m.deberta = nn.Module(); m.deberta.embeddings = nn.Module(); m.deberta.encoder = nn.Module()
    m.deberta.embeddings.word_embeddings,m.deberta.embeddings.LayerNorm = nn.Embedding(5, d),nn.LayerNorm(d)
    layers = []
    for _ in range(n):
        l = nn.Module(); l.attention = nn.Module(); l.attention.output = nn.Module()
        l.attention.output.dense,l.attention.output.LayerNorm = nn.Linear(d, d),nn.LayerNorm(d)
        layers.append(l)
    m.deberta.encoder.layer = nn.ModuleList(layers)
    m.pooler,m.fc = nn.Linear(d, d),nn.Linear(d, 1)
    return m

def _as_list(p): return p if isinstance(p, list) else [p]

@pytest.mark.parametrize('low,mid,head', [(0, 0, 1), (3, 9, 15), (7, 7, 19), (19, 19, 19), (2, 12, 20)])
@pytest.mark.parametrize('lrs', [dict(), dict(base_lr=1e-3, head_lr=5e-3, wd=0.1), dict(wd=0.)])
def test_deberta_equals_pytorch_optimizer(low, mid, head, lrs):
    m = tiny_deberta()
    a,b = deberta_v3_large_lr_scheduler(m, low, mid, head, **lrs),po_deberta(m, low, mid, head, **lrs)
    assert len(a) == len(b) == head + 1
    for ga,gb in zip(a, b):
        assert [id(p) for p in _as_list(ga['params'])] == [id(p) for p in _as_list(gb['params'])]
        assert {k: v for k,v in ga.items() if k != 'params'} == {k: v for k,v in gb.items() if k != 'params'}
    opt = optim.AdamW(a, lr=1e-3)  # an optimizer takes them
    assert len(opt.param_groups) == head + 1

def test_deberta_levels_and_no_decay():
    m = tiny_deberta()
    names = [nm for nm,_ in m.named_parameters()]
    g = deberta_v3_large_lr_scheduler(m, 3, 9, 15, base_lr=1e-3, head_lr=7e-3, wd=0.2)
    assert g[0]['lr'] == 7e-3 and 'weight_decay' not in g[0] and len(g[0]['params']) == len(names) - 15
    assert [pg['lr'] for pg in g[1:]] == [1e-3/2.5]*3 + [1e-3]*6 + [2e-3]*6
    assert [pg['weight_decay'] for pg in g[1:]] == [0. if ('bias' in nm or 'LayerNorm.weight' in nm) else 0.2 for nm in names[:15]]
    assert g[2]['weight_decay'] == 0. and names[1].endswith('LayerNorm.weight')

@pytest.mark.parametrize('args,kw,msg', [
    ((), {}, 'head_param_start=390: must be < 23'),
    ((0, 0, 23), {}, 'head_param_start=23'),
    ((5, 3, 10), {}, 'layer_middle_threshold=3'),
    ((1, 12, 10), {}, 'layer_middle_threshold=12'),
    ((-1, 2, 3), {}, 'layer_low_threshold=-1'),
    ((1, 2, 3), dict(head_lr=-1e-3), 'head_lr'),
    ((1, 2, 3), dict(wd=float('nan')), 'wd'),
])
def test_deberta_bad_arguments(args, kw, msg):
    with pytest.raises(ValueError, match=msg.replace('(', r'\(').replace('[', r'\[')):
        deberta_v3_large_lr_scheduler(tiny_deberta(), *args, **kw)
    with pytest.raises(ValueError, match='model'): deberta_v3_large_lr_scheduler([nn.Parameter(torch.zeros(1))])


from pytorch_optimizer.lr_scheduler.chebyshev import get_chebyshev_schedule

def _run_lrs(sched, n):
    "Every group's lr for each of `n` updates (read, optimizer.step(), sched.step())."
    out = []
    for _ in range(n):
        out.append([g['lr'] for g in sched.optimizer.param_groups]); sched.optimizer.step(); sched.step()
    return out

@pytest.mark.parametrize('T', [1, 2, 5, 16, 100])
def test_chebyshev_is_warmup_equals_pytorch_optimizer(T):
    a = get_chebyshev_schedule(groups([0.01, 0.3]), T, is_warmup=True)
    b = ChebyshevSched(groups([0.01, 0.3]), T_max=T, is_warmup=True)
    va,vb = _run_lrs(a, T + 5),_run_lrs(b, T + 5)
    assert va == vb == [[0.01, 0.3]]*(T + 5)
    assert [b.get_updated_values(n) for n in (0, T, 10**9)] == [[0.01, 0.3]]*3

def test_chebyshev_is_warmup_off_unchanged():
    "is_warmup=False (the default) is the schedule it was: the original's multipliers, shifted by its two epochs."
    for T in (8, 64):
        s = ChebyshevSched(groups([1.]), T_max=T, is_warmup=False)
        assert list(s.mults) == list(ChebyshevSched(groups([1.]), T_max=T).mults)
        assert all(close(s.get_updated_values(n)[0], get_chebyshev_lr_lambda(n + 2, T, is_warmup=False)) for n in range(T))
        assert max(s.mults) > 10

def test_chebyshev_is_warmup_checked_and_resumes():
    with pytest.raises(ValueError, match='is_warmup=0'): ChebyshevSched(groups([1.]), T_max=8, is_warmup=0)
    s = ChebyshevSched(groups([0.1]), T_max=8, is_warmup=True)
    for _ in range(3): s.optimizer.step(); s.step()
    sd = s.state_dict(); assert sd['is_warmup'] is True and 'mults' not in sd
    t = ChebyshevSched(groups([0.1]), T_max=8, is_warmup=True); t.load_state_dict(sd)
    assert _run_lrs(t, 4) == [[0.1]]*4


import pytorch_accelerated.schedulers.wsd_scheduler as paw
from miniai.compat import WSDLrScheduler

def _pa_values(s, n):
    v = s.get_updated_values(n)
    return v if isinstance(v, list) else [v]*len(s.optimizer.param_groups)

@FAST
@given(T=st.integers(4, 3000), k=st.sampled_from([1, 3]), r=st.floats(0., 1/3), inv=st.booleans(), wf=st.floats(0., 1.),
       cont=st.booleans(), m=st.floats(0.001, 1.), ws=st.floats(0., 1e-3))
def test_wsd_lr_equals_pyacc(T, k, r, inv, wf, cont, m, ws):
    "Every update of the run and 30 past it, 1 or 3 checkpoints (T a multiple of 4 for 3: where the original's are right)."
    if k == 3: T = 4*(T//4)
    kw = dict(total_steps=T, num_checkpoints=k, decay_phase_ratio=r, use_inverse_sqrt_decay=inv, lr_min=m,
              warmup_starting_lr=ws, is_continuation_from_checkpoint=cont)
    d0 = int((T >> (k - 1))*r)
    kw['num_warmup_steps'] = int(wf*((T >> (k - 1)) - d0))
    assume(d0 > 0 or r == 0)  # the original divides by zero past the end when the first period has no decay
    a,b = paw.WSDLrScheduler(groups([0.01, 0.002]), **kw),WSDLrScheduler(groups([0.01, 0.002]), **kw)
    assert b.get_checkpoint_steps() == a.get_checkpoint_steps() and b.get_decay_info() == a.get_decay_info()
    for n in range(T + 30 if r > 0 else T):
        assert all(close(x, y) for x,y in zip(b.get_updated_values(n), _pa_values(a, n))), n

@pytest.mark.parametrize('T,k,r', [(100, 1, 0.1), (1000, 3, 0.2), (1003, 1, 0.5), (4000, 3, 1/3)])
def test_wsd_lr_run_equals_pyacc_stepped(T, k, r):
    "Stepped as in training: ours after n updates holds the original's get_updated_values(n), through the last checkpoint and on."
    kw = dict(total_steps=T, num_checkpoints=k, decay_phase_ratio=r, num_warmup_steps=T//20, lr_min=0.01)
    a,b = paw.WSDLrScheduler(groups([0.1, 0.01]), **kw),WSDLrScheduler(groups([0.1, 0.01]), **kw)
    got = _run_lrs(b, T + 50)
    assert all(close(x, y) for n in range(T + 50) for x,y in zip(got[n], _pa_values(a, n)))
    assert got[-1] == [0.1*0.01, 0.01*0.01] and got[T] == got[-1]
    for cp in b.get_checkpoint_steps()[:-1]:  # continuation: back at the base lr at each checkpoint but the last
        assert got[cp] == [0.1, 0.01] and got[cp - 1][0] < 0.1

def test_wsd_lr_checkpoints_doubling_last_at_end():
    for T,k,cps in ((100_000, 2, [50_000, 100_000]), (200_000, 4, [25_000, 50_000, 100_000, 200_000]),
                    (200_000, 3, [50_000, 100_000, 200_000]), (1001, 3, [250, 500, 1001]), (7, 3, [1, 2, 7]), (5, 1, [5])):
        assert WSDLrScheduler(groups(), total_steps=T, num_checkpoints=k, decay_phase_ratio=0.).get_checkpoint_steps() == cps
    assert paw.estimate_checkpoint_steps(100_000, 2) == [25_000, 50_000]  # the original's bug, shown
    s = WSDLrScheduler(groups([0.1]), total_steps=100, num_checkpoints=2, lr_min=0.01)
    v = _run_lrs(s, 100)
    assert v[50:90] == [[0.1]]*40 and v[99][0] < 0.02 and s.get_last_lr() == [0.1*0.01]

def test_wsd_lr_fixes():
    s = WSDLrScheduler(groups([0.1]), total_steps=20, lr_min=0., use_inverse_sqrt_decay=False)
    assert [s.get_updated_values(n)[0] for n in (17, 18, 19, 20, 25)] == [0.1, 0.1, 0., 0., 0.]
    s = WSDLrScheduler(groups([0.1]), total_steps=12, num_checkpoints=3, decay_phase_ratio=0.3, lr_min=0.1)
    assert [s.get_updated_values(n)[0] for n in (11, 12, 13)] == [0.1, 0.1*0.1, 0.1*0.1]
    s = WSDLrScheduler(groups([0.1]), total_steps=12, decay_phase_ratio=0.)  # no decay: the base lr throughout
    assert [s.get_updated_values(n)[0] for n in (0, 11, 12, 100)] == [0.1]*4
    assert _run_lrs(WSDLrScheduler(groups([0.1]), total_steps=20, num_warmup_steps=5, warmup_starting_lr=0.001), 2) == [[0.001], [0.001 + 0.099/5]]

def test_wsd_lr_resume_and_continuation():
    kw = dict(total_steps=60, num_checkpoints=3, decay_phase_ratio=0.2, num_warmup_steps=5)
    s = WSDLrScheduler(groups([0.1, 0.01]), **kw)
    for _ in range(23): s.optimizer.step(); s.step()
    t = WSDLrScheduler(groups([0.1, 0.01]), **kw); t.load_state_dict(deepcopy(s.state_dict()))
    assert _run_lrs(t, 50) == _run_lrs(s, 50)
    c = WSDLrScheduler(groups([0.5, 0.5]), total_steps=40, num_warmup_steps=5, is_continuation_from_checkpoint=True)
    c.load_state_dict(s.state_dict())
    v = _run_lrs(c, 41)
    assert v[:37] == [[0.1, 0.01]]*37 and v[37][0] < 0.1 and v[40] == [0.1*1e-6, 0.01*1e-6] and c.get_checkpoint_steps() == [40]

@pytest.mark.parametrize('kw,msg', [
    (dict(total_steps=11, num_epochs=2, num_update_steps_per_epoch=5), r'not both \(they make 10\)'),
    (dict(num_epochs=2), 'num_update_steps_per_epoch=None'),
    (dict(), 'num_epochs=None'),
    (dict(total_steps=0), 'total_steps=0'),
    (dict(total_steps=10.), 'total_steps=10.0'),
    (dict(total_steps=100, num_checkpoints=2, decay_phase_ratio=0.34), 'decay_phase_ratio=0.34'),
    (dict(total_steps=100, decay_phase_ratio=1.5), 'decay_phase_ratio=1.5'),
    (dict(total_steps=3, num_checkpoints=3), 'num_checkpoints=3'),
    (dict(total_steps=100, num_checkpoints=0), 'num_checkpoints=0'),
    (dict(total_steps=100, num_warmup_steps=91), 'num_warmup_steps=91'),
    (dict(total_steps=100, num_warmup_steps=5, warmup_starting_lr=1.), 'warmup_starting_lr=1.0'),
    (dict(total_steps=100, lr_min=-0.1), 'lr_min=-0.1'),
    (dict(total_steps=100, use_inverse_sqrt_decay='yes'), 'use_inverse_sqrt_decay'),
])
def test_wsd_lr_bad_arguments(kw, msg):
    with pytest.raises(ValueError, match=msg): WSDLrScheduler(groups([0.1]), **kw)

def test_wsd_lr_create_scheduler_fn():
    f = WSDLrScheduler.create_scheduler_fn(num_checkpoints=3, decay_phase_ratio=0.2, num_warmup_epochs=1, num_update_steps_per_epoch=4)
    s = f(groups([0.1]), num_epochs=40)
    assert s.total_steps == 160 and s.num_warmup_steps == 4 and s.get_checkpoint_steps() == [40, 80, 160]
    g = WSDLrScheduler.create_scheduler_fn(total_num_epochs=__import__("pytorch_accelerated").TrainerPlaceholderValues.NUM_EPOCHS)(groups([0.1]), num_epochs=5, num_update_steps_per_epoch=20)
    assert g.total_steps == 100 and g.num_warmup_steps == 1
    assert WSDLrScheduler(groups(), total_steps=10, num_epochs=2, num_update_steps_per_epoch=5).total_steps == 10  # as a fit fills them
    assert WSDLrScheduler(groups(), total_steps=12, num_update_steps_per_epoch=5).total_steps == 12


# ---------------------------------------------------------------- annealers with one value per param group (fastai's arrays)
@pytest.mark.parametrize('make', [list, tuple, np.array, partial(torch.tensor, dtype=torch.float64)])
def test_annealers_array_valued(make):
    lo,hi = make([0.01, 0.1, 1.]),make([0.02, 0.3, 0.5])
    assert np.allclose(SchedLin(lo, hi)(0.25), [0.0125, 0.15, 0.875], rtol=1e-14)
    assert np.allclose(SchedCos(lo, hi)(0.5), [0.015, 0.2, 0.75], rtol=1e-14)
    assert np.allclose(SchedExp(lo, hi)(0.5), [0.01*2**0.5, 0.1*3**0.5, 0.5**0.5], rtol=1e-14)
    assert np.allclose(SchedPoly(lo, hi, 2.)(0.5), [0.0125, 0.15, 0.875], rtol=1e-14)
    assert SchedNo(lo)(0.9).tolist() == [0.01, 0.1, 1.] and SchedLin(lo, 0.)(2.).tolist() == [0., 0., 0.]
    assert SchedLin(0., hi)(1.).tolist() == pytest.approx([0.02, 0.3, 0.5]) and SchedLin(lo, hi).n_values == 3

def test_param_sched_array_valued_by_hand():
    o = groups([1., 1.])
    s = ParamSched(o, 'lr', SchedCos([0.1, 0.01], [0.001, 0.]), T_max=4)
    want = [[0.001 + 0.099*(1 + math.cos(math.pi*k/4))/2, 0.01*(1 + math.cos(math.pi*k/4))/2] for k in range(5)]
    got = _run_lrs(s, 5)
    assert all(close(x, y) for g,w in zip(got, want) for x,y in zip(g, w)) and s.get_last_lr() == [0.001, 0.]
    # each group's value is exactly the scalar annealer's
    assert [ParamSched(groups([1.]), 'lr', SchedCos(a, b), T_max=4).get_updated_values(3)[0] for a,b in ((0.1, 0.001), (0.01, 0.))] == s.get_updated_values(3)
    # combined, and relative: multipliers of each group's own base lr
    c = combine_scheds([0.5, 0.5], [SchedLin([0.5, 1.], 1.), SchedLin(1., [0.1, 0.01])])
    r = ParamSched(groups([0.2, 0.02]), 'lr', c, T_max=4, relative=True)
    assert [[round(v, 15) for v in r.get_updated_values(n)] for n in range(5)] == \
        [[0.1, 0.02], [0.15, 0.02], [0.2, 0.02], [0.11, 0.0101], [0.02, 0.0002]]
    assert ParamSched(groups([1.]), 'lr', SchedLin([0.3], [0.1]), T_max=2).get_updated_values(1) == [pytest.approx(0.2)]

def test_param_sched_array_valued_function():
    "A plain function giving a list per position: taken entry by entry; a wrong count is refused with both counts."
    s = ParamSched(groups([1., 1.]), 'lr', lambda pos: np.array([0.1, 0.01])*(1 - pos), T_max=4)
    assert s.get_updated_values(2) == [0.05, 0.005]
    with pytest.raises(ValueError, match='gives 3 values at pos=0.0 for 2 param groups'):
        ParamSched(groups([1., 1.]), 'lr', lambda pos: [0.1, 0.2, 0.3], T_max=4)

@pytest.mark.parametrize('make,msg', [
    (lambda: SchedLin([1., 2.], [1., 2., 3.]), 'has 3 values and start 2'),
    (lambda: SchedCos([], 1.), 'non-empty 1-d'),
    (lambda: SchedCos(np.zeros((2, 2)), 1.), 'non-empty 1-d'),
    (lambda: SchedLin([1., float('nan')], 0.), r'start\[1\]=nan'),
    (lambda: SchedExp([1e-3, -1.], 1.), r'start\[1\]=-1.0'),
    (lambda: SchedExp(1., [1., 0.]), r'end\[1\]=0.0'),
    (lambda: combine_scheds([0.5, 0.5], [SchedLin([1., 2.], 0.), SchedLin([1., 2., 3.], 0.)]), 'scheds\\[0\\] has 2, scheds\\[1\\] has 3'),
    (lambda: ParamSched(groups([1., 1., 1.]), 'lr', SchedLin([1., 2.], 0.), T_max=3), 'gives 2 values per position .* for 3 param groups'),
    (lambda: ParamSched(groups([1.]), 'lr', combine_scheds([0.5, 0.5], [SchedNo(1.), SchedLin(1., [0., 0.])]), T_max=3), 'gives 2 values .* for 1 param group$'),
    (lambda: ParamSched(groups([1., 1.]), 'lr', [SchedLin([1., 2.], 0.), SchedLin(1., 0.)], T_max=3), 'each must give one value'),
])
def test_array_valued_bad(make, msg):
    with pytest.raises(ValueError, match=msg): make()


# ---------------------------------------------------------------- restarts at fractional epochs
from fractions import Fraction

@FAST
@given(q=st.integers(1, 40), spe=st.integers(1, 30), m=st.sampled_from([1, 2, 3]), wq=st.integers(0, 8), each=st.booleans(),
       ns=st.lists(st.integers(0, 5000), max_size=30))
def test_restarts_fractional_epochs_equal_reference(q, spe, m, wq, each, ns):
    "first = q/4 epochs, warmup wq/8 epochs (exact in floats): restarts at the nearest update to each epoch, halves up."
    first,wep = q/4,wq/8
    W = math.floor(Fraction(wq, 8)*spe + Fraction(1, 2))
    assume(Fraction(q, 4)*spe >= W + 1)
    s = CosineRestartsSched(groups([0.1]), first_cycle_epochs=first, warmup_epochs=wep, cycle_mult=m,
                            num_update_steps_per_epoch=spe, warmup_each_cycle=each)
    starts,c = [0],0
    while starts[-1] <= 5000:
        c += 1
        starts.append(math.floor(Fraction(q, 4)*sum(m**i for i in range(c))*spe + Fraction(1, 2)))
    assert [s.cycle_start(i) for i in range(len(starts))] == starts and s.warmup == W
    for i in range(len(starts) - 1):
        assert s.cos_len(i) == starts[i + 1] - starts[i] - (W if each or i == 0 else 0) >= 1
    for n in ns + starts[:-1]:
        k = max(i for i,st_ in enumerate(starts) if st_ <= n)
        assert s.locate(n) == (k, n - starts[k])

def test_restarts_fractional_epochs_by_hand():
    s = CosineRestartsSched(groups([0.1]), first_cycle_epochs=0.5, cycle_mult=3, num_update_steps_per_epoch=7)
    assert [s.cycle_start(c) for c in range(5)] == [0, 4, 14, 46, 140]  # 3.5 and 45.5 round up
    s = CosineRestartsSched(groups([0.1]), first_cycle_epochs=1.5, num_update_steps_per_epoch=3, warmup_epochs=0.5, min_lr=0.)
    v = [x[0] for x in _run_lrs(s, 10)]
    assert s.warmup == 2 and [s.cycle_start(c) for c in range(4)] == [0, 5, 9, 14]
    assert all(close(a, b) for a,b in zip(v, [0., 0.05, 0.1, 0.075, 0.025, 0., 0.05, 0.1, 0.05, 0.]))
    # whole epochs, no warmup: the layout of first_cycle_steps
    a = CosineRestartsSched(groups([0.1, 0.01]), T_max=200, first_cycle_epochs=3, cycle_mult=2, num_update_steps_per_epoch=4)
    b = CosineRestartsSched(groups([0.1, 0.01]), T_max=200, first_cycle_steps=12, cycle_mult=2)
    assert _run_lrs(a, 210) == _run_lrs(b, 210)

def test_restarts_fractional_epochs_resume_and_huge():
    kw = dict(first_cycle_epochs=0.7, cycle_mult=1.5, warmup_epochs=0.2, num_update_steps_per_epoch=10, T_max=300)
    s = CosineRestartsSched(groups([0.1]), **kw)
    for _ in range(37): s.optimizer.step(); s.step()
    t = CosineRestartsSched(groups([0.1]), **kw); t.load_state_dict(deepcopy(s.state_dict()))
    assert _run_lrs(t, 300) == _run_lrs(s, 300)
    h = CosineRestartsSched(groups([0.1]), first_cycle_epochs=0.5, num_update_steps_per_epoch=3)  # cycles of 1 or 2 updates, forever
    c,pos = h.locate(2**53)
    assert h.cycle_start(c) <= 2**53 < h.cycle_start(c + 1) and pos == 2**53 - h.cycle_start(c)

@pytest.mark.parametrize('kw,msg', [
    (dict(first_cycle_epochs=0.05, num_update_steps_per_epoch=10), r'first_cycle_epochs=0.05: is 0.5 updates .* warmup_steps \+ 1 = 1'),
    (dict(first_cycle_epochs=0.3, warmup_epochs=0.25, num_update_steps_per_epoch=10), r'warmup_steps \+ 1 = 4'),
    (dict(first_cycle_epochs=0.5), 'num_update_steps_per_epoch=None'),
    (dict(first_cycle_steps=5, warmup_epochs=0.5), 'num_update_steps_per_epoch=None'),
    (dict(first_cycle_epochs=1., cycle_mult=0.9, num_update_steps_per_epoch=10), 'cycle_mult=0.9'),
    (dict(first_cycle_epochs=0., num_update_steps_per_epoch=10), 'first_cycle_epochs=0.0'),
    (dict(first_cycle_epochs=1., first_cycle_steps=10, num_update_steps_per_epoch=10), 'exactly one'),
    (dict(first_cycle_epochs=1., warmup_steps=2, warmup_epochs=0.1, num_update_steps_per_epoch=10), 'not both'),
    (dict(first_cycle_epochs=1., num_update_steps_per_epoch=2.5), 'num_update_steps_per_epoch=2.5'),
])
def test_restarts_fractional_epochs_bad(kw, msg):
    with pytest.raises(ValueError, match=msg): CosineRestartsSched(groups([0.1]), **kw)

def test_array_valued_annealer_given_to_batchschedcb_sets_each_groups_lr():
    "An annealer with one value per group, passed to BatchSchedCB directly: each group gets its own float lr, not the array."
    from miniai.schedfamily import SchedCos
    from miniai.sched import BatchSchedCB
    from miniai.learner import TrainLearner, Callback
    import torch.nn.functional as F
    from torch import nn, optim
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    from miniai.datasets import DataLoaders
    x = torch.randn(32, 2); dls = DataLoaders([(x[i:i+8], x[i:i+8].sum(1, keepdim=True)) for i in range(0, 32, 8)], [])
    two = lambda params, lr: optim.SGD([{'params': m[0].parameters()}, {'params': m[1].parameters()}], lr=lr)
    lrs = []
    class Log(Callback):
        def before_batch(self, learn):
            if learn.training: lrs.append([g['lr'] for g in learn.opt.param_groups])
    learn = TrainLearner(m, dls, F.mse_loss, opt_func=two, cbs=[BatchSchedCB(SchedCos([0.1, 0.01], [0., 0.])), Log()], thread_guard=False)
    learn.fit(1)
    want = [[0.1*(1 + math.cos(math.pi*i/4))/2, 0.01*(1 + math.cos(math.pi*i/4))/2] for i in range(4)]
    assert all(type(v) is float for r in lrs for v in r)
    assert lrs == [pytest.approx(w, rel=1e-12) for w in want]
    learn = TrainLearner(m, dls, F.mse_loss, opt_func=two, cbs=[BatchSchedCB(SchedCos([0.1, 0.01, 0.001], 0.))], thread_guard=False)
    with pytest.raises(ValueError, match=r"made for 3 param groups, the optimizer has 2"): learn.fit(1)

def test_wsdlr_lives_in_its_module_and_keeps_its_old_import_path():
    """WSDLrScheduler is defined in miniai.wsdlr (23_wsdlr); miniai.compat re-exports it without exporting it, and
    both borrowed modules share warmupdecay's `_unfilled` (one definition)."""
    import miniai.compat as compat, miniai.wsdlr as wsdlr, miniai.warmupdecay as wd
    assert wsdlr.__all__ == ['WSDLrScheduler'] and 'WSDLrScheduler' not in compat.__all__
    assert compat.WSDLrScheduler is wsdlr.WSDLrScheduler and wsdlr.WSDLrScheduler.__module__ == 'miniai.wsdlr'
    assert compat._unfilled is wsdlr._unfilled is wd._unfilled
    assert wd._unfilled(None) and not wd._unfilled(0) and not wd._unfilled(5)
