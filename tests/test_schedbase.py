"The base classes: pytorch-accelerated's API, any field, the counting convention, resume."
import pytest
import torch
from torch import nn, optim

from miniai.schedbase import SchedulerBase, StatefulSchedulerBase, get_field, set_field, resolve_field

def adamw(**kw): return optim.AdamW(nn.Linear(2, 1).parameters(), **{'lr': 0.1, **kw})
def sgd(**kw): return optim.SGD(nn.Linear(2, 1).parameters(), **{'lr': 0.1, **kw})

# pytorch-accelerated's documentation examples, unchanged but for the import
class MilestoneLrScheduler(StatefulSchedulerBase):
    def __init__(self, optimizer, gamma=0.5, epoch_milestones=(2, 4, 5), num_steps_per_epoch=100):
        super().__init__(optimizer, param_group_field="lr")
        self.milestones = set((num_steps_per_epoch * milestone for milestone in epoch_milestones))
        self.gamma = gamma
    def get_updated_values(self, num_updates: int):
        if num_updates in self.milestones:
            lr_values = [group[self.param_group_field] for group in self.optimizer.param_groups]
            return [lr * self.gamma for lr in lr_values]

class StepWdScheduler(StatefulSchedulerBase):
    def __init__(self, optimizer, n=1000, gamma=1.1):
        super().__init__(optimizer, param_group_field="weight_decay")
        self.n = n
        self.gamma = gamma
    def get_updated_values(self, num_updates: int):
        if num_updates % self.n == 0 and num_updates > 0:
            wd_values = [group[self.param_group_field] for group in self.optimizer.param_groups]
            return [wd * self.gamma for wd in wd_values]

def test_docs_examples_coexist_on_one_optimizer():
    opt = adamw(weight_decay=0.01)
    lr_s,wd_s = MilestoneLrScheduler(opt, epoch_milestones=(1, 2), num_steps_per_epoch=4), StepWdScheduler(opt, n=3, gamma=2.)
    seen = []
    for _ in range(9):
        seen.append((opt.param_groups[0]['lr'], opt.param_groups[0]['weight_decay']))
        opt.step(); lr_s.step(); wd_s.step()
    assert [l for l,_ in seen] == [0.1]*4 + [0.05]*4 + [0.025]
    assert [w for _,w in seen] == [0.01]*3 + [0.02]*3 + [0.04]*3

def test_real_pytorch_accelerated_cannot_instantiate_its_own_examples():
    pa = pytest.importorskip('pytorch_accelerated.schedulers')
    class M(pa.StatefulSchedulerBase):
        def get_updated_values(self, n): return None
    with pytest.raises(TypeError, match='abstract'): M(adamw())

class Lin(SchedulerBase):
    "lr = base * (1 - n/10), closed form."
    closed_form = True
    def get_updated_values(self, n): return [b * (1 - min(n, 10)/10) for b in self.base_values]
class LinS(StatefulSchedulerBase, Lin): pass

def test_stateful_equals_stateless_and_torch_convention():
    o1,o2 = adamw(),adamw()
    s1,s2 = LinS(o1),Lin(o2)
    for n in range(1, 12):
        s1.step(); s2.step_update(n)
        assert o1.param_groups[0]['lr'] == o2.param_groups[0]['lr'] == pytest.approx(0.1 * (1 - min(n, 10)/10))
    # torch's LambdaLR with the same function: after n steps it holds f(n) too
    o3 = adamw(); t = torch.optim.lr_scheduler.LambdaLR(o3, lambda n: 1 - min(n, 10)/10)
    o4 = adamw(); s4 = LinS(o4)
    for _ in range(12):
        assert o3.param_groups[0]['lr'] == pytest.approx(o4.param_groups[0]['lr'])
        o3.step(); t.step(); s4.step()

def test_pytorch_accelerated_stateful_is_one_update_behind():
    pa = pytest.importorskip('pytorch_accelerated.schedulers')
    class PaLin(pa.StatefulSchedulerBase):
        def get_updated_values(self, n): return [b * (1 - min(n, 10)/10) for b in self.base_lr_values]
        def state_dict(self): return {}
        def load_state_dict(self, sd): pass
    o1,o2 = adamw(),adamw()
    theirs,ours = PaLin(o1),LinS(o2)
    lr1,lr2 = [],[]
    for _ in range(6):
        lr1.append(o1.param_groups[0]['lr']); lr2.append(o2.param_groups[0]['lr'])
        theirs.step(); ours.step()
    assert lr1[0] == lr1[1] == 0.1           # f(0) used for two updates
    assert lr1[1:] == pytest.approx(lr2[:-1])  # theirs is ours one update late

@pytest.mark.parametrize('field,opt,get', [
    ('beta1', lambda: adamw(betas=(0.9, 0.99)), lambda pg: pg['betas'][0]),
    ('beta2', lambda: adamw(betas=(0.9, 0.99)), lambda pg: pg['betas'][1]),
    ('mom', lambda: adamw(betas=(0.9, 0.99)), lambda pg: pg['betas'][0]),
    ('mom', lambda: sgd(momentum=0.9), lambda pg: pg['momentum']),
    ('eps', lambda: adamw(eps=1e-8), lambda pg: pg['eps']),
    ('weight_decay', lambda: adamw(weight_decay=0.1), lambda pg: pg['weight_decay']),
])
def test_any_field(field, opt, get):
    o = opt(); start = get(o.param_groups[0])
    s = Lin(o, field)
    s.step_update(5)
    assert get(o.param_groups[0]) == pytest.approx(start/2)
    if 'betas' in o.param_groups[0]:
        other = o.param_groups[0]['betas'][1 if resolve_field(o.param_groups[0], field) == 'beta1' else 0]
        assert other in (0.9, 0.99)
    assert s.fields == (field,)

@pytest.mark.parametrize('field,opt,msg', [
    ('beta1', lambda: sgd(momentum=0.9), "field='beta1' needs a 'betas'"),
    ('mom', lambda: optim.Adagrad(nn.Linear(2, 1).parameters()), "field='mom'"),
    ('gamma', lambda: adamw(), "field='gamma' is not in the param group"),
])
def test_bad_field_is_clear(field, opt, msg):
    with pytest.raises(ValueError, match=msg.replace('(', r'\(')): Lin(opt(), field)

def test_not_an_optimizer():
    with pytest.raises(TypeError, match='needs a torch optimizer'): Lin([1, 2, 3])

def test_resume_both_orders():
    def trained(n):
        o = adamw(); s = LinS(o)
        for _ in range(n): o.step(); s.step()
        return o, s
    oa,sa = trained(4)
    # optimizer state first, then a new scheduler, then its state
    ob = adamw(); ob.load_state_dict(oa.state_dict()); sb = LinS(ob); sb.load_state_dict(sa.state_dict())
    # a new scheduler first, then the optimizer state, then the scheduler state
    oc = adamw(); sc = LinS(oc); oc.load_state_dict(oa.state_dict()); sc.load_state_dict(sa.state_dict())
    for _ in range(8):
        assert ob.param_groups[0]['lr'] == oc.param_groups[0]['lr'] == oa.param_groups[0]['lr']
        sa.step(); sb.step(); sc.step()

def test_get_set_field_helpers():
    pg = adamw(betas=(0.9, 0.99)).param_groups[0]
    set_field(pg, 'beta2', 0.95)
    assert pg['betas'] == (0.9, 0.95) and get_field(pg, 'beta2') == 0.95 and get_field(pg, 'mom') == 0.9


# ---------------------------------------------------------------- numbers in every form, everywhere (issue 8, items 4 and 5)
import inspect, math, re, warnings
import numpy as np
from hypothesis import given, settings, assume, strategies as st
import miniai.schedbase, miniai.sched, miniai.warmupdecay, miniai.schedfamily, miniai.compat, miniai.wsdlr
from miniai.schedbase import check_num, check_bool, check_opt
from miniai.sched import CosineAnnealing, OneCycle
from miniai.schedfamily import (WarmupDecaySched, LinearSched, CosineSched, PolySched, RexSched, WSDSched, CosineRestartsSched,
                                ChebyshevSched, ParamSched, ProportionScheduler, CosineLrScheduler, Annealer, SchedLin, SchedCos,
                                SchedNo, SchedExp, SchedPoly, CombinedSched, combine_scheds)
warnings.filterwarnings('ignore', message='Detected call of')
from miniai.compat import WSDLrScheduler

I,F = 'int','float'
def _ps(lo, f, T_max, **kw): return ParamSched(lo, 'lr', f, T_max, **kw)
# name -> (builder(opt, **params) -> a scheduler or a list of them (stepped in order), {param: (kind, valid values)}, fixed kwargs)
# A value that is a list or tuple is a sequence of numbers (one per group, or moms): each item gets its own form.
WD = dict(T_max=(I, [10, 17]), warmup_steps=(I, [0, 3]), max_lr=(F, [0.1, 0.05, [0.1, 0.02]]), min_ratio=(F, [0., 0.1]),
          init_ratio=(F, [0.01, 0.]), k_decay=(F, [1., 2]))
WD_ABS = dict(T_max=(I, [12]), warmup_pct=(F, [0.2, 0.25]), min_lr=(F, [1e-3, [1e-3, 0.]]), init_lr=(F, [2e-3]))
SPECS = {
    'CosineAnnealing': (CosineAnnealing, dict(T_max=(I, [5, 12]), eta_min=(F, [0., 1e-3])), {}),
    'OneCycle': (OneCycle, dict(T_max=(I, [7, 20]), max_lr=(F, [0.05, 1, 0, [0.1, 0.05]]), pct_start=(F, [0.25, 0.3]),
                                div=(F, [25, 10.]), div_final=(F, [1e4, 1e5]), moms=(F, [(0.95, 0.85, 0.95), (0.9, 0.8, 0.85)])), {}),
    'OneCycle3': (OneCycle, dict(T_max=(I, [9]), pct_start=(F, [0.5, 0.2])), dict(three_phase=True, anneal='linear')),
    'LinearSched': (LinearSched, WD, {}), 'CosineSched': (CosineSched, WD, {}), 'RexSched': (RexSched, WD, {}),
    'CosineSched_abs': (CosineSched, WD_ABS, {}),
    'PolySched': (PolySched, {**WD, 'power': (F, [0.5, 2])}, {}),
    'WSDSched': (WSDSched, {**WD, 'decay_steps': (I, [2, 0])}, {}),
    'WSDSched_pct': (WSDSched, {**WD_ABS, 'decay_pct': (F, [0.3, 0.5])}, {}),
    'CosineRestartsSched': (CosineRestartsSched, dict(first_cycle_steps=(I, [4, 6]), cycle_mult=(F, [1, 2., 1.5]), gamma=(F, [0.5, 1]),
                                                       warmup_steps=(I, [0, 1]), min_ratio=(F, [0., 0.1]), k_decay=(F, [1., 2.])), {}),
    'CosineRestartsSched_fit': (CosineRestartsSched, dict(T_max=(I, [20, 30]), n_cycles=(I, [2, 3]), cycle_mult=(F, [1, 2.])), {}),
    'ChebyshevSched': (ChebyshevSched, dict(T_max=(I, [8, 6]), small_m=(F, [0.05, 0.1]), big_m=(F, [1, 0.8])), {}),
    'ParamSched': (lambda o, T_max, start, end: _ps(o, SchedLin(start, end), T_max),
                   dict(T_max=(I, [10, 5]), start=(F, [0.1, 1]), end=(F, [0.01, 0])), {}),
    'ParamSched_cos': (lambda o, start, end: _ps(o, SchedCos(start, end), 10, relative=True), dict(start=(F, [1., 0.5]), end=(F, [0.1, 0])), {}),
    'ParamSched_no': (lambda o, start: _ps(o, SchedNo(start), 10), dict(start=(F, [0.1, 2])), {}),
    'ParamSched_exp': (lambda o, start, end: _ps(o, SchedExp(start, end), 10), dict(start=(F, [0.1]), end=(F, [1e-3, 1])), {}),
    'ParamSched_poly': (lambda o, start, end, power: _ps(o, SchedPoly(start, end, power), 10),
                        dict(start=(F, [0.1]), end=(F, [1e-3]), power=(F, [2, 0.5])), {}),
    'ParamSched_combined': (lambda o, pcts: _ps(o, combine_scheds(pcts, [SchedLin(0.01, 0.1), SchedCos(0.1, 0.)]), 10),
                            dict(pcts=(F, [[0.3, 0.7], [0.5, 0.5]])), {}),
    'ProportionScheduler': (lambda o, **kw: [s := CosineSched(o, T_max=10), ProportionScheduler(s, **kw)],
                            dict(max_lr=(F, [0.1, 1]), min_lr=(F, [0., 0.01]), max_value=(F, [2., 0.5]), min_value=(F, [0.05, 1])), {}),
    'CosineLrScheduler': (CosineLrScheduler, dict(total_num_epochs=(I, [3, 4]), num_update_steps_per_epoch=(I, [2, 3]),
                                                  k_decay=(F, [1., 1.5]), lr_min=(F, [1e-4, 0]), num_warmup_epochs=(I, [0, 1]),
                                                  warmup_starting_lr=(F, [1e-4]), num_cooldown_epochs=(I, [0, 1])), {}),
    'WSDLrScheduler': (WSDLrScheduler, dict(total_steps=(I, [20, 16]), decay_phase_ratio=(F, [0.1, 0.3]), lr_min=(F, [1e-6, 0.01]),
                                            warmup_starting_lr=(F, [1e-6, 1e-3]), num_checkpoints=(I, [1, 2])), {}),
    'CosineLrScheduler_ratio': (CosineLrScheduler, dict(total_num_epochs=(I, [3]), num_update_steps_per_epoch=(I, [2]),
                                                        min_lr_ratio=(F, [0.1, 0]), num_warmup_epochs=(I, [1]),
                                                        warmup_starting_lr_ratio=(F, [0.05, 0.5])), {}),
}
BOOLS = {'OneCycle': ('three_phase',), 'CosineRestartsSched': ('warmup_each_cycle',), 'ChebyshevSched': ('fractal', 'pow2'),
         'WSDLrScheduler': ('use_inverse_sqrt_decay',)}

def test_every_scheduler_is_covered():
    "A new scheduler or annealer in the public API cannot escape the tests below."
    abstract = {miniai.schedbase.SchedulerBase, miniai.schedbase.StatefulSchedulerBase, WarmupDecaySched, Annealer}
    public = [getattr(m, n) for m in (miniai.schedbase, miniai.sched, miniai.warmupdecay, miniai.schedfamily, miniai.compat, miniai.wsdlr)
              for n in m.__all__]
    classes = {c for c in public if inspect.isclass(c) and issubclass(c, (miniai.schedbase.SchedulerBase, Annealer, CombinedSched))}
    built = ''.join(inspect.getsource(b) for b,_,_ in SPECS.values() if not inspect.isclass(b))  # the lambdas' source
    covered = {b for b,_,_ in SPECS.values() if inspect.isclass(b)} | {c for c in classes if re.search(rf'\b{c.__name__}\b', built)}
    covered |= {CombinedSched} if 'combine_scheds' in built else set()
    assert classes - abstract <= covered, sorted(c.__name__ for c in classes - abstract - covered)

def _groups(lrs=(0.1, 0.05), tensor=False):
    return optim.SGD([{'params': [nn.Parameter(torch.zeros(1))], 'lr': torch.tensor(l) if tensor else l} for l in lrs], momentum=0.9)

def _forms(x, kind):
    "Every form a torch user may pass the number `x` in (a numpy float32 or a float32 tensor round it to float32)."
    if kind == I: return [x, np.int64(x), np.int32(x), np.array(x), torch.tensor(x), torch.tensor(x, dtype=torch.int32)]
    fs = [x, float(x), np.float64(x), np.float32(x), np.array(float(x)), torch.tensor(float(x), dtype=torch.float64),
          torch.tensor(float(x)), torch.tensor(float(x), requires_grad=True)]
    return fs + ([np.int64(x), torch.tensor(x)] if isinstance(x, int) else [])

def _py(v):
    "The Python number a form stands for (what the scheduler must compute with)."
    if isinstance(v, (list, tuple)): return type(v)(_py(o) for o in v)
    return v.item() if hasattr(v, 'item') else v

def _build(name, kw, lrs=(0.1, 0.05), tensor=False):
    b,_,fixed = SPECS[name]
    o = _groups(lrs, tensor)
    s = b(o, **kw, **fixed)
    return o,(s if isinstance(s, list) else [s])

def _trajectory(o, ss, n=8):
    res = []
    for _ in range(n):
        vs = [get_field(pg, f) for s in ss for f in s.fields for pg in o.param_groups]
        res.append([v.item() if isinstance(v, torch.Tensor) else v for v in vs])  # a tensor is filled in place: copy
        o.step()
        for s in ss: s.step()
    return res

@settings(max_examples=150, deadline=None)
@given(st.data())
def test_every_number_form_is_the_same_number(data):
    "Python, numpy and 0-d tensor values of a parameter give exactly the schedule of the Python number they stand for."
    name = data.draw(st.sampled_from(sorted(SPECS)), label='scheduler')
    params = SPECS[name][1]
    kw = {p: data.draw(st.sampled_from(vs), label=p) for p,(kind,vs) in params.items()}
    forms = {p: (type(v)(data.draw(st.sampled_from(_forms(o, params[p][0])), label=f'{p} item') for o in v)
                 if isinstance(v, (list, tuple)) else data.draw(st.sampled_from(_forms(v, params[p][0])), label=f'{p} form'))
             for p,v in kw.items()}
    try: ref = _trajectory(*_build(name, {p: _py(v) for p,v in forms.items()}))
    except ValueError: assume(False)  # a combination this scheduler refuses whatever the form
    got = _trajectory(*_build(name, forms))
    assert got == ref
    assert all(type(v) is float for row in got for v in row)  # nothing but Python floats written into the groups

BAD = [True, False, np.bool_(True), 'x', '1', None, float('nan'), float('inf'), -float('inf'), [1.], torch.tensor([1., 2.]),
       torch.tensor(True), 1j]

@pytest.mark.parametrize('name', sorted(SPECS))
def test_every_non_number_is_refused_by_name(name):
    "bool, str, None (where it has no meaning), nan, inf, lists and n-d tensors: a ValueError naming the parameter."
    params = SPECS[name][1]
    kw = {p: vs[0] for p,(k,vs) in params.items()}
    _build(name, kw)
    for p,(kind,vs) in params.items():
        bads = BAD + ([2.5, 10.0, torch.tensor(3.), np.float64(3.)] if kind == I else [])
        for bad in bads:
            if bad is None and p in ('warmup_steps', 'decay_steps', 'max_lr', 'min_lr', 'init_lr', 'init_ratio', 'decay_pct',
                                     'warmup_pct', 'min_lr_ratio', 'warmup_starting_lr_ratio', 'moms', 'end') \
                                 or (p == 'T_max' and name.startswith('CosineRestarts')) \
                                 or (p == 'total_steps' and name == 'WSDLrScheduler'):  # None: from num_epochs
                continue  # None has a meaning here (a default)
            v = (type(vs[0])([bad] + list(vs[0][1:])) if isinstance(vs[0], (list, tuple)) else bad)
            if name.startswith('ParamSched') and p in ('start', 'end') and isinstance(bad, (list, torch.Tensor)) and getattr(bad, 'ndim', 1) == 1:
                # one value per param group is allowed (fastai's array-valued annealers): the count must match the 2 groups
                if len(bad) == 2: _build(name, {**kw, p: v})
                else:
                    with pytest.raises(ValueError, match=rf'gives {len(bad)} values per position .*for 2 param groups'): _build(name, {**kw, p: v})
                continue
            with pytest.raises(ValueError) as e: _build(name, {**kw, p: v})
            assert re.search(rf'\b{p}(\[\d+\])?=', str(e.value)), (p, bad, str(e.value))

@pytest.mark.parametrize('name', sorted(BOOLS))
def test_booleans_must_be_booleans(name):
    kw = {p: vs[0] for p,(k,vs) in SPECS[name][1].items()}
    for p in BOOLS[name]:
        for bad in ('abc', 'False', 1, 0, None, 1.):
            with pytest.raises(ValueError, match=rf"{p}={re.escape(repr(bad))}: must be True or False"): _build(name, {**kw, p: bad})
        assert _trajectory(*_build(name, {**kw, p: np.bool_(True)})) == _trajectory(*_build(name, {**kw, p: True}))

@pytest.mark.parametrize('name', sorted(SPECS))
def test_tensor_lr_optimizer(name):
    "An optimizer built with tensor lrs: same trajectory as with floats, and each group keeps its own tensor (torch's rule)."
    kw = {p: vs[0] for p,(k,vs) in SPECS[name][1].items()}
    lrs = [torch.tensor(l).item() for l in (0.1, 0.05)]  # the float32 numbers the tensors hold
    ref = _trajectory(*_build(name, kw, lrs))
    o,ss = _build(name, kw, lrs, tensor=True)
    ts = [pg['lr'] for pg in o.param_groups]
    got = _trajectory(o, ss)
    is_lr = [f == 'lr' for s in ss for f in s.fields for pg in o.param_groups]
    ref32 = [[float(np.float32(v)) if lr else v for v,lr in zip(row, is_lr)]  # an lr written into a float32 tensor is
             for row in ref]                                                # rounded to float32, by torch's schedulers too
    if name == 'ProportionScheduler': assert sum(got, []) == pytest.approx(sum(ref32, []), rel=1e-6)  # it reads the lr back
    else: assert got == ref32
    assert all(pg['lr'] is t for pg,t in zip(o.param_groups, ts))  # written in place: a compiled optimizer sees it
    assert all(type(v) is float for s in ss for v in s.get_last_values() + s.base_values)

@pytest.mark.parametrize('make', [
    lambda o: CosineAnnealing(o, 10), lambda o: OneCycle(o, 10), lambda o: CosineSched(o, T_max=10),
    lambda o: WSDSched(o, T_max=10), lambda o: CosineRestartsSched(o, first_cycle_steps=5), lambda o: ChebyshevSched(o, T_max=8),
    lambda o: ParamSched(o, 'lr', SchedNo(1.), 5), lambda o: ProportionScheduler(o, max_lr=0.1),
    lambda o: CosineLrScheduler(o, 2, 3), lambda o: Lin(o), lambda o: LinS(o)])
def test_not_an_optimizer_same_error_everywhere(make):
    "Issue 8: a model, a list, None... or an optimizer without param groups: the same error from every scheduler."
    for bad in (nn.Linear(2, 1), [1, 2], None, 3):
        with pytest.raises(TypeError, match=rf'needs a torch optimizer, got {type(bad).__name__}'): make(bad)
    o = sgd(); o.param_groups.clear()
    with pytest.raises(ValueError, match='has no param groups: there is nothing to schedule'): make(o)

def test_check_num_rules():
    assert check_num('x', np.float32(0.5)) == 0.5 and type(check_num('x', torch.tensor(1))) is float
    assert check_num('n', torch.tensor(3), integer=True) == 3 and type(check_num('n', np.int16(3), integer=True)) is int
    assert check_num('x', None, allow_none=True) is None
    for bad,msg in [(10.0, 'a float'), (torch.tensor(2.), 'a float'), ('3', 'got a str'), (True, 'got a bool'),
                    (np.bool_(True), 'got a bool'), (torch.ones(3), 'shape (3,)')]:
        with pytest.raises(ValueError, match=re.escape(msg)): check_num('n', bad, lo=1, integer=True)
    with pytest.raises(ValueError, match=r'x=inf: must be a finite number in \(0, 1\]'): check_num('x', float('inf'), lo=0, hi=1, lo_open=True)
    with pytest.raises(ValueError, match='x=10: must be a finite number < 10'): check_num('x', 10, hi=10, hi_open=True)
    with pytest.raises(ValueError, match=r'x=10000.*: must be a finite number'): check_num('x', 10**400)
    assert check_bool('b', np.bool_(True)) is True
