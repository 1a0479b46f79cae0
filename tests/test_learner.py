"The Learner's contract: hook order, cancel semantics, per-fit callbacks, update counting, lr_find restoring state."
from copy import deepcopy
import math
from functools import partial
import pytest
import torch
import torch.nn.functional as F
from torch import nn, optim
from torcheval.metrics import MulticlassAccuracy

from miniai.learner import (Learner, TrainLearner, MomentumLearner, Callback, TrainCB, MetricsCB, ProgressCB, SingleBatchCB,
                            DeviceCB, CancelFitException, CancelEpochException, CancelBatchException, HOOKS, run_cbs,
                            suggest_lr, smooth, LRFinderCB)

class DLs:
    def __init__(self, train, valid): self.train,self.valid = train,valid

def regression_dls(n=256, bs=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g); y = x @ torch.tensor([[2.], [-1.], [0.5]]) + 0.1
    b = [(x[i:i+bs], y[i:i+bs]) for i in range(0, n, bs)]
    return DLs(b, b[:2])

def class_dls(n=256, bs=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g); y = (x[:, 0] > 0).long()
    b = [(x[i:i+bs], y[i:i+bs]) for i in range(0, n, bs)]
    return DLs(b, b[:2])

class Log(Callback):
    "Logs every hook, prefixing validation ones with 'v:'."
    def __init__(self, order=0): self.order,self.log = order,[]
    def __getattr__(self, nm):
        if nm in HOOKS: return lambda learn: self.log.append(nm if learn.training or 'fit' in nm else 'v:' + nm)
        raise AttributeError(nm)

TRAIN_BATCH = ['before_batch', 'after_predict', 'after_loss', 'after_backward', 'after_step', 'after_batch', 'cleanup_batch']
VALID_BATCH = ['v:before_batch', 'v:after_predict', 'v:after_loss', 'v:after_batch', 'v:cleanup_batch']

def test_hook_order_one_epoch():
    cb = Log()
    dls = regression_dls(n=64, bs=32)
    TrainLearner(nn.Linear(3, 1), dls, F.mse_loss, cbs=[cb]).fit(1)
    want = (['before_fit', 'before_epoch'] + TRAIN_BATCH*2 + ['after_epoch', 'cleanup_epoch', 'v:before_epoch']
            + VALID_BATCH*2 + ['v:after_epoch', 'v:cleanup_epoch', 'after_fit', 'cleanup_fit'])
    assert cb.log == want

def test_callbacks_sorted_by_order_stable():
    seen = []
    class C(Callback):
        def __init__(self, name, order): self.name,self.order = name,order
        def before_fit(self, learn): seen.append(self.name)
    TrainLearner(nn.Linear(3, 1), regression_dls(), F.mse_loss, cbs=[C('b', 1), C('a', 0), C('c', 1)]).fit(0)
    assert seen == ['a', 'b', 'c']

@pytest.mark.parametrize('exc,where,skipped,ran', [
    (CancelBatchException, 'after_predict', 'after_loss', 'cleanup_batch'),
    (CancelEpochException, 'after_loss', 'after_epoch', 'cleanup_epoch'),
    (CancelFitException, 'after_backward', 'after_fit', 'cleanup_fit'),
])
def test_cancel_skips_after_but_runs_cleanup(exc, where, skipped, ran):
    log = Log(order=1)
    class Stop(Callback):
        def __init__(self): self.done = False
    stop = Stop()
    def raise_once(learn):
        if learn.training and not stop.done: stop.done = True; raise exc()
    setattr(stop, where, raise_once)
    TrainLearner(nn.Linear(3, 1), regression_dls(n=32, bs=32), F.mse_loss, cbs=[stop, log]).fit(1)
    i = log.log.index('before_batch')
    first = log.log[i:log.log.index(ran) + 1]
    assert skipped not in first and first[-1] == ran
    if exc is CancelFitException: assert 'after_fit' not in log.log and log.log[-1] == 'cleanup_fit'
    else: assert log.log[-2:] == ['after_fit', 'cleanup_fit']

def test_fit_cbs_removed_also_on_error():
    class Boom(Callback):
        def after_loss(self, learn): raise RuntimeError('boom')
    extra = Log()
    learn = TrainLearner(nn.Linear(3, 1), regression_dls(), F.mse_loss, cbs=[Log()])
    with pytest.raises(RuntimeError, match='boom'): learn.fit(1, cbs=[Boom(), extra])
    assert len(learn.cbs) == 1 and extra.log[-1] == 'cleanup_fit'
    learn.fit(1, cbs=extra)
    assert len(learn.cbs) == 1

def test_new_optimizer_each_fit_and_kept_after():
    learn = TrainLearner(nn.Linear(3, 1), regression_dls(), F.mse_loss, lr=0.05, opt_func=optim.AdamW)
    learn.fit(1); opt1 = learn.opt
    learn.fit(1, lr=0.01)
    assert isinstance(learn.opt, optim.AdamW) and learn.opt is not opt1
    assert learn.opt.param_groups[0]['lr'] == 0.01

def test_n_updates_counts_real_steps_only():
    class SkipOdd(Callback):
        def after_backward(self, learn):
            if learn.iter % 2: learn.step_skipped = True
    class CancelThird(Callback):
        def after_predict(self, learn):
            if learn.training and learn.iter == 2: raise CancelBatchException()
    learn = TrainLearner(nn.Linear(3, 1), regression_dls(n=256, bs=32), F.mse_loss, cbs=[SkipOdd(), CancelThird()])
    learn.fit(2)
    # 8 batches per epoch: iters 1,3,5,7 skipped, iter 2 cancelled -> 3 real updates (0,4,6) per epoch
    assert learn.n_updates == 6

def test_linear_regression_converges_and_metrics_history():
    torch.manual_seed(0)
    m = nn.Linear(3, 1)
    mcb = MetricsCB()
    TrainLearner(m, regression_dls(), F.mse_loss, lr=0.1, cbs=[mcb]).fit(5)
    assert torch.allclose(m.weight.data, torch.tensor([[2., -1., 0.5]]), atol=1e-3)
    assert [r['epoch'] for r in mcb.history] == [0, 1, 2, 3, 4]
    assert list(mcb.history[0]) == ['epoch', 'train_loss', 'valid_loss', 'time']
    assert mcb.history[-1]['valid_loss'] < 1e-5

def test_metrics_weighted_loss_mean():
    dls = regression_dls(n=40, bs=32)  # batches of 32 and 8
    mcb = MetricsCB()
    m = nn.Linear(3, 1)
    TrainLearner(m, DLs(dls.train, dls.train), F.mse_loss, lr=1e-9, cbs=[mcb]).fit(1)
    with torch.no_grad():
        x = torch.cat([b[0] for b in dls.train]); y = torch.cat([b[1] for b in dls.train])
        want = F.mse_loss(m(x), y).item()
    assert math.isclose(mcb.history[0]['valid_loss'], want, rel_tol=1e-5)

def test_metrics_and_train_cb_on_plain_learner():
    torch.manual_seed(0)
    mcb = MetricsCB(accuracy=MulticlassAccuracy())
    learn = Learner(nn.Linear(4, 2), class_dls(), F.cross_entropy, lr=0.5, cbs=[TrainCB(), mcb, DeviceCB('cpu')])
    learn.fit(3)
    assert mcb.history[-1]['accuracy'] > 0.9

def test_momentum_learner_trains():
    torch.manual_seed(0)
    m = nn.Linear(3, 1)
    MomentumLearner(m, regression_dls(), F.mse_loss, lr=0.05, mom=0.5).fit(5)
    assert torch.allclose(m.weight.data, torch.tensor([[2., -1., 0.5]]), atol=1e-2)

def test_progress_terminal_one_row_per_epoch(capsys):
    TrainLearner(nn.Linear(3, 1), regression_dls(), F.mse_loss, cbs=[MetricsCB(), ProgressCB()]).fit(3)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and lines[0].split() == ['epoch', 'train_loss', 'valid_loss', 'time']
    assert [l.split()[0] for l in lines[1:]] == ['1', '2', '3']  # epochs count from 1 wherever they are shown

def test_single_batch_cb():
    cb = Log()
    learn = TrainLearner(nn.Linear(3, 1), regression_dls(), F.mse_loss, cbs=[cb, SingleBatchCB()])
    learn.fit(3)
    assert learn.n_updates == 1 and cb.log.count('before_batch') == 1 and cb.log[-1] == 'cleanup_fit'

@pytest.mark.parametrize('bad', [-1, 1.5, True, '2'])
def test_bad_n_epochs(bad):
    with pytest.raises(ValueError, match='n_epochs='): TrainLearner(nn.Linear(3, 1), regression_dls(), F.mse_loss).fit(bad)

@pytest.mark.parametrize('bad', [0, -0.1, float('nan'), float('inf')])
def test_bad_lr(bad):
    with pytest.raises(ValueError, match='lr='): TrainLearner(nn.Linear(3, 1), regression_dls(), F.mse_loss, lr=bad)
    with pytest.raises(ValueError, match='lr='): TrainLearner(nn.Linear(3, 1), regression_dls(), F.mse_loss).fit(1, lr=bad)

def test_fit_without_dls_is_clear():
    with pytest.raises(ValueError, match='dls.train'): TrainLearner(nn.Linear(3, 1)).fit(1)

def test_lr_find_restores_model_optimizer_and_rng():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    learn = TrainLearner(m, class_dls(), F.cross_entropy, lr=0.1, opt_func=optim.AdamW)
    learn.fit(1)
    opt = learn.opt
    w_before = deepcopy(m.state_dict()); o_before = deepcopy(opt.state_dict())
    rng = torch.get_rng_state()
    res = learn.lr_find(gamma=1.3, start_lr=1e-4)
    assert learn.opt is opt
    for k,v in m.state_dict().items(): assert torch.equal(v, w_before[k]), k
    o_after = opt.state_dict()
    for pid,st in o_before['state'].items():
        for k,v in st.items(): assert torch.equal(torch.as_tensor(o_after['state'][pid][k]), torch.as_tensor(v))
    assert o_after['param_groups'][0]['lr'] == o_before['param_groups'][0]['lr']
    assert torch.equal(torch.get_rng_state(), rng)
    assert 1e-4 <= res.lr <= res.lrs[-1] and len(res.lrs) == len(res.losses) >= 3
    assert res.fig is not None and len(res.fig.axes) == 1
    assert len(learn.cbs) == 0

def test_lr_find_then_fit_same_as_fit_alone():
    def run(with_find):
        torch.manual_seed(1)
        m = nn.Linear(4, 2)
        learn = TrainLearner(m, class_dls(), F.cross_entropy, lr=0.1)
        if with_find: learn.lr_find(plot=False)
        learn.fit(1)
        return m.weight.detach().clone()
    assert torch.equal(run(True), run(False))

def test_suggest_lr_picks_the_falling_stretch():
    lrs = [1e-5 * 1.3**i for i in range(40)]
    losses = [3.0]*10 + [3.0 - 0.25*i for i in range(1, 11)] + [0.5 + 0.4*i for i in range(20)]
    for m in ('valley', 'steep'):  # the falling stretch: its middle, and its steepest point
        assert lrs[10] <= suggest_lr(lrs, losses, m, beta=0.) <= lrs[20], m
    with pytest.raises(ValueError, match='at least 3'): suggest_lr(lrs[:2], losses[:2])
    with pytest.raises(ValueError, match='gamma='): LRFinderCB(gamma=1.)

# Issue 8, items 7-9: arguments checked when the Learner is built; empty passes; lr_find leaves callbacks alone.
@pytest.mark.parametrize('kw,msg', [
    (dict(cbs=[ProgressCB]), 'cbs[0]=ProgressCB: a callback class, not a callback: pass ProgressCB()'),
    (dict(cbs=[MetricsCB(), 1]), 'cbs[1]=1: not a callback'),
    (dict(loss_func='cross_entropy'), "loss_func='cross_entropy': must be a function"),
    (dict(opt_func=None), 'opt_func=None: must be a function'),
    (dict(lr=None), 'lr=None'),
])
def test_learner_arguments_checked_when_built(kw, msg):
    with pytest.raises((TypeError, ValueError)) as e: TrainLearner(nn.Linear(3, 1), regression_dls(), **{'loss_func': F.mse_loss, **kw})
    assert msg in str(e.value)

def test_fit_cbs_checked():
    learn = TrainLearner(nn.Linear(3, 1), regression_dls(), F.mse_loss)
    with pytest.raises(TypeError, match=r'fit\(cbs=...\)\[0\]=SingleBatchCB: a callback class'): learn.fit(1, cbs=[SingleBatchCB])

def test_momentum_learner_defaults_and_mom_checked():
    MomentumLearner(nn.Linear(3, 1), regression_dls(), F.mse_loss).fit(1)  # its own default lr works
    for bad in (1.5, -0.1, 'x', True):
        with pytest.raises(ValueError, match='mom='): MomentumLearner(nn.Linear(3, 1), regression_dls(), F.mse_loss, mom=bad)

def test_empty_training_loader_is_named():
    with pytest.raises(ValueError, match='dls.train .* has no batches'):
        TrainLearner(nn.Linear(3, 1), DLs([], []), F.mse_loss).fit(1)

def test_empty_validation_pass_shows_nan_not_zero():
    mcb = MetricsCB(quiet=True)
    TrainLearner(nn.Linear(3, 1), DLs(regression_dls().train, []), F.mse_loss, cbs=[mcb]).fit(1)
    assert math.isnan(mcb.history[-1]['valid_loss']) and mcb.history[-1]['train_loss'] > 0

def test_lr_find_leaves_schedules_and_histories_alone():
    from miniai.sched import BatchSchedCB, OneCycle, RecorderCB
    mcb,rec,sch = MetricsCB(),RecorderCB(),BatchSchedCB(partial(OneCycle, max_lr=0.1))
    mcb.listeners.clear()
    learn = TrainLearner(nn.Linear(3, 1), regression_dls(), F.mse_loss, lr=0.1, cbs=[mcb, rec, sch], opt_func=optim.AdamW)
    learn.fit(2)
    hist,recs,n,sched = deepcopy(mcb.history),deepcopy(rec.recs),learn.n_updates,sch.sched
    seen = []
    class Spy(Callback):
        def after_step(self, learn): seen.append(learn.opt.param_groups[0]['lr'])
    learn.cbs.append(Spy())
    res = learn.lr_find(plot=False, start_lr=1e-4)
    assert seen == res.lrs[:len(seen)] and all(b > a for a,b in zip(seen, seen[1:]))  # the finder's lrs, not OneCycle's
    assert mcb.history == hist and rec.recs == recs and learn.n_updates == n and sch.sched is sched

# Issue 9, items 2 and 5: lr_find's suggestions and display; MetricsCB prints the table ProgressCB prints.
def test_suggest_lr_methods_on_a_known_curve():
    lrs = [1e-5 * 1.3**i for i in range(40)]
    losses = [3.0]*10 + [3.0 - 0.25*i for i in range(1, 11)] + [0.5 + 0.4*i for i in range(20)]
    assert suggest_lr(lrs, losses, 'minimum', beta=0.) == pytest.approx(lrs[19] / 10)  # lowest loss first at lrs[19]
    assert lrs[9] <= suggest_lr(lrs, losses, 'steep', beta=0.) < lrs[19]  # a point of the (uniform) fall
    assert suggest_lr(lrs, losses, 'valley', beta=0.) == pytest.approx(lrs[14])  # middle of the fall, lrs[9]..lrs[19]
    assert lrs[0] <= suggest_lr(lrs, losses, 'slide', beta=0.) <= lrs[-1]
    assert suggest_lr(lrs, losses, beta=0.) == suggest_lr(lrs, losses, 'minimum', beta=0.)  # the measured default
    # a NaN at the end (the finder stops on it) is left out, not smoothed into every later point
    assert suggest_lr(lrs + [lrs[-1]*1.3], losses + [float('nan')], 'minimum') == suggest_lr(lrs, losses, 'minimum')
    with pytest.raises(ValueError, match="method='best'"): suggest_lr(lrs, losses, 'best')
    with pytest.raises(ValueError, match='pair up'): suggest_lr(lrs, losses[:-1])

def test_lr_find_result_is_short_and_plots_every_suggestion():
    torch.manual_seed(0)
    learn = TrainLearner(nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2)), class_dls(n=1024), F.cross_entropy,
                         opt_func=optim.AdamW)
    res = learn.lr_find()
    assert set(res.suggestions) == {'valley', 'slide', 'minimum', 'steep'} and res.method == 'minimum'
    assert res.lr == res.suggestions['minimum']
    r = repr(res)
    assert len(r) < 200 and f'{res.lr:.2e}' in r and 'minimum' in r, r  # not the 1,690-character NamedTuple
    legend = [t.get_text() for t in res.fig.axes[0].get_legend().get_texts()]
    for k,v in res.suggestions.items(): assert any(t.startswith(f'{k}: {v:.1e}') for t in legend), (k, legend)
    assert any('suggested' in t and t.startswith('minimum') for t in legend)
    assert learn.lr_find(method='valley', plot=False).lr == res.suggestions['valley']
    with pytest.raises(ValueError, match='method='): learn.lr_find(method='fastest')

def test_metrics_cb_alone_prints_the_progress_table(capsys):
    def out(cbs):
        torch.manual_seed(0)
        TrainLearner(nn.Linear(3, 1), regression_dls(), F.mse_loss, cbs=cbs).fit(2)
        return capsys.readouterr().out.splitlines()
    alone,progress = out([MetricsCB()]),out([MetricsCB(), ProgressCB(bars=False)])
    assert [l.split() for l in alone] == [l.split() for l in progress][:3] and len(alone) == 3  # header and two rows
    assert alone[0].split() == ['epoch', 'train_loss', 'valid_loss', 'time'] and alone[1].split()[0] == '1'
    assert '{' not in ''.join(alone) and all(len(v.split('.')[-1]) <= 4 for v in alone[1].split()[1:3])  # no raw dicts
    m = MetricsCB(); learn = TrainLearner(nn.Linear(3, 1), regression_dls(), F.mse_loss, cbs=[m])
    learn.fit(1); learn.fit(1)
    assert [l.split()[0] for l in capsys.readouterr().out.splitlines()] == ['epoch', '1', 'epoch', '1']  # a header per fit

def test_metrics_row_listeners_printer_progress_swap_and_quiet(capsys):
    """MetricsCB calls each of its `listeners` with every finished row (a row listener of yours sees what `history`
    keeps); ProgressCB puts its table in the printer's place and leaves the others; quiet starts with no printer, and
    a ProgressCB still shows the rows (as it did when it overwrote the old private `_log`)."""
    fit = lambda cbs, n=2: TrainLearner(nn.Linear(3, 1), regression_dls(), F.mse_loss, cbs=cbs).fit(n)
    rows,m = [],MetricsCB()
    m.listeners.append(rows.append)
    fit([m])
    assert rows == m.history and len(rows) == 2 and len(capsys.readouterr().out.splitlines()) == 3  # printed: header + 2
    p = ProgressCB(bars=False)
    fit([m, p])
    assert m.listeners == [p.show_row, rows.append] and len(rows) == 4 and rows[2:] == m.history
    assert len(capsys.readouterr().out.splitlines()) == 3  # ProgressCB's table only, not the printer's too
    fit([m, ProgressCB(bars=False)])  # a new ProgressCB replaces the last one's table
    assert m.listeners[0] != p.show_row and len(m.listeners) == 2 and len(capsys.readouterr().out.splitlines()) == 3
    q = MetricsCB(quiet=True)
    fit([q])
    assert q.listeners == [] and capsys.readouterr().out == '' and len(q.history) == 2
    fit([q, ProgressCB(bars=False)])
    assert len(capsys.readouterr().out.splitlines()) == 3
    with pytest.raises(ValueError, match="quiet=1: must be True or False"): MetricsCB(quiet=1)

def test_thread_guard_drops_to_one_thread_when_batches_slow_down():
    import time
    from miniai.learner import ThreadGuardCB
    class Work(Callback):
        "Each training batch takes ~5 ms; with `slow_from`, batches from that one on take 100 ms more (shared cores)."
        def __init__(self, slow_from=None): self.slow_from = slow_from
        def after_loss(self, learn):
            if not learn.training: return
            time.sleep(0.105 if self.slow_from is not None and learn.iter >= self.slow_from else 0.005)
    old = torch.get_num_threads(); torch.set_num_threads(2)
    try:
        g = ThreadGuardCB()
        TrainLearner(nn.Linear(3, 1), regression_dls(n=512, bs=32), F.mse_loss, cbs=[g, Work(slow_from=8)]).fit(1)
        assert g.dropped and torch.get_num_threads() == 2  # dropped during the fit, put back after it
        torch.set_num_threads(2); g2 = ThreadGuardCB()
        TrainLearner(nn.Linear(3, 1), regression_dls(n=512, bs=32), F.mse_loss, cbs=[g2, Work()]).fit(1)
        assert not g2.dropped and torch.get_num_threads() == 2  # steady batches: left alone
    finally: torch.set_num_threads(old)
