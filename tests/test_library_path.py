"Issue 22 and issue 19's fastai habits: the library path a newcomer takes, fast by default and loud when misused."
import re, subprocess, sys, textwrap, warnings
from pathlib import Path
import pytest
from conftest import slow
import torch
import torch.nn.functional as F
from torch import nn, optim
from torcheval.metrics import MulticlassAccuracy

from miniai.learner import Learner, TrainLearner, TrainCB, Callback, MetricsCB, ThreadGuardCB
from miniai.datasets import DataLoaders
from loaders import DLs

REPO = Path(__file__).resolve().parents[1]

def class_dls(n=256, bs=32, seed=0, n_cls=2):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g); y = (x[:, 0] + x[:, 1] > 0).long() % n_cls
    return DLs([(x[i:i+bs], y[i:i+bs]) for i in range(0, n, bs)], [(x[:128], y[:128])])

class Count(Callback):
    "Counts training steps and predictions."
    def __init__(self): self.steps,self.preds = 0,0
    def after_predict(self, learn): self.preds += 1
    def after_step(self, learn): self.steps += 1

# ------------------------------------------------------------------ 1. the thread guard by default
_GUARD_JOB = '''
import sys, time, torch, torch.nn.functional as F
from torch import nn
sys.path.insert(0, {tests!r})
from loaders import DLs
from miniai.learner import TrainLearner, Callback, ThreadGuardCB
torch.set_num_threads(2)
x = torch.randn(32, 3); b = [(x, x.sum(1, keepdim=True))]*14
class Busy(Callback):
    "From the 8th training batch on, each batch takes 150 ms more: the cores taken by another process."
    def after_loss(self, learn):
        if learn.training: time.sleep(0.15 if learn.iter >= 7 else 0.002)
kw = dict(thread_guard={guard})
learn = TrainLearner(nn.Linear(3, 1), DLs(b, b[:1]), F.mse_loss, cbs=[Busy()], **kw)
learn.fit(1)
print('threads after fit', torch.get_num_threads(), 'cbs', [type(cb).__name__ for cb in learn.cbs])
'''

def run_job(guard):
    src = _GUARD_JOB.format(tests=str(REPO/'tests'), guard=guard)
    return subprocess.run([sys.executable, '-c', src], capture_output=True, text=True, cwd=REPO, timeout=120)

def test_thread_guard_is_on_by_default_says_so_once_and_restores_threads():
    r = run_job('True')
    assert r.returncode == 0, r.stderr
    lines = [l for l in r.stderr.splitlines() if l.startswith('miniai:')]
    assert len(lines) == 1, r.stderr
    # the batches slow down (or, on a busy machine, the load check after 0.25 s sees it first)
    assert ('slower on 2 threads: the cores are shared; using 1 thread until this fit ends' in lines[0] or
            'miniai: other processes are using the cores' in lines[0] and 'using 1 thread instead of 2 until this fit ends' in lines[0])
    assert lines[0].endswith('(Learner(..., thread_guard=False) turns this off)')
    assert "threads after fit 2 cbs ['Busy']" in r.stdout  # restored, and the guard left with the fit

def test_thread_guard_false_leaves_the_threads_alone():
    r = run_job('False')
    assert r.returncode == 0, r.stderr
    assert 'miniai:' not in r.stderr and "threads after fit 2 cbs ['Busy']" in r.stdout

def fake_clock_fit(steps, threads=2, **kw):
    "A real TrainLearner fit whose guard reads a fake clock: batch i 'takes' steps[i] seconds."
    now = [0.]
    class Tick(Callback):
        def after_loss(self, learn):
            if learn.training: now[0] += steps[learn.iter]
    g = ThreadGuardCB(clock=lambda: now[0], **{'check_after': None, **kw})
    x = torch.randn(8, 3); b = [(x, x.sum(1, keepdim=True))]*len(steps)
    old = torch.get_num_threads(); torch.set_num_threads(threads)
    seen = []
    class Threads(Callback):
        order = 1  # after the guard
        def after_batch(self, learn):
            if learn.training: seen.append(torch.get_num_threads())
    try:
        TrainLearner(nn.Linear(3, 1), DLs(b, []), F.mse_loss, cbs=[Tick(), Threads()], thread_guard=g).fit(1)
        return g, seen, torch.get_num_threads()
    finally: torch.set_num_threads(old)

def test_thread_guard_decision_with_an_injected_clock(capsys):
    g,seen,after = fake_clock_fit([0.005]*8 + [0.105]*4)
    assert g.dropped and seen[-1] == 1 and after == 2
    assert seen.index(1) == 10  # the third slow batch in a row (batches 8, 9, 10) drops it
    assert capsys.readouterr().err.count('miniai: training batches became 21x slower on 2 threads') == 1
    g,seen,after = fake_clock_fit([0.005]*12)
    assert not g.dropped and set(seen) == {2} and after == 2
    g,seen,_ = fake_clock_fit([0.005]*8 + [0.105, 0.005]*2)  # slow batches not in a row: no drop
    assert not g.dropped
    g,seen,_ = fake_clock_fit([0.0001]*8 + [0.005]*4)  # 50x slower but only 5 ms longer: tiny batches' jitter
    assert not g.dropped
    old = torch.get_num_threads()
    g,seen,after = fake_clock_fit([0.005]*8 + [0.105]*4, restore=False)
    try: assert g.dropped and after == 1  # the old behaviour, when asked for
    finally: torch.set_num_threads(old)  # not 2: a later test in this process would train on threads it did not ask for

def test_thread_guard_measures_free_cores_once_after_check_after_seconds(capsys):
    calls = []
    def free(since): calls.append(since); return 0.6
    g,seen,after = fake_clock_fit([0.01]*40, check_after=0.25, free_cores=free)
    assert g.dropped and after == 2 and len(calls) == 1 and calls[0] is not None  # a /proc/stat sample from the fit's start
    assert seen.index(1) == 24  # 25 batches of 10 ms: 0.25 s of training
    err = capsys.readouterr().err
    assert err.count('miniai: other processes are using the cores (0.6 of ') == 1 and 'using 1 thread instead of 2 until this fit ends' in err
    g,seen,after = fake_clock_fit([0.01]*40, check_after=0.25, free_cores=lambda since: 1.6)
    assert not g.dropped and set(seen) == {2}  # 1.6 cores free: rounds to 2, left alone
    g,seen,after = fake_clock_fit([0.01]*40, threads=1, check_after=0.25, free_cores=lambda since: 0.1/0)
    assert not g.dropped  # one thread already: nothing measured

_HOGGED = """
import sys, time, torch, torch.nn.functional as F
from torch import nn
sys.path.insert(0, {tests!r})
from loaders import DLs
from miniai.learner import TrainLearner
torch.set_num_threads(2)
x = torch.randn(256, 64); b = [(x, x[:, :1])]*400
learn = TrainLearner(nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 1)), DLs(b, []), F.mse_loss, lr=1e-3)
learn.fit(1)
print('threads after fit', torch.get_num_threads())
"""

@slow
def test_thread_guard_on_really_busy_cores_uses_the_free_ones():
    "Two processes spinning on this machine's cores (it has 2): a default fit on 2 threads drops to 1, says so, restores."
    import os
    hogs = [subprocess.Popen([sys.executable, '-c', 'while True: pass']) for _ in range(os.cpu_count() or 1)]
    try:
        r = subprocess.run([sys.executable, '-c', _HOGGED.format(tests=str(REPO/'tests'))], capture_output=True, text=True, cwd=REPO, timeout=300)
    finally:
        for h in hogs: h.kill(); h.wait()
    assert r.returncode == 0, r.stderr
    lines = [l for l in r.stderr.splitlines() if l.startswith('miniai:')]
    assert len(lines) == 1 and ('other processes are using the cores' in lines[0] or 'slower on 2 threads' in lines[0]), r.stderr
    assert lines[0].endswith('until this fit ends (Learner(..., thread_guard=False) turns this off)')
    assert 'threads after fit 2' in r.stdout

def test_thread_guard_restores_threads_when_the_fit_fails():
    now = [0.]
    class Tick(Callback):
        def after_loss(self, learn):
            now[0] += 0.105 if learn.iter >= 7 else 0.005
            if learn.iter == 11: raise RuntimeError('boom')
    x = torch.randn(8, 3); b = [(x, x.sum(1, keepdim=True))]*12
    old = torch.get_num_threads(); torch.set_num_threads(2)
    try:
        g = ThreadGuardCB(clock=lambda: now[0], check_after=None)
        with pytest.raises(RuntimeError, match='boom'):
            TrainLearner(nn.Linear(3, 1), DLs(b, []), F.mse_loss, cbs=[Tick()], thread_guard=g).fit(1)
        assert g.dropped and torch.get_num_threads() == 2
    finally: torch.set_num_threads(old)

def test_one_guard_per_fit_and_bad_setting_named():
    g = ThreadGuardCB()
    learn = TrainLearner(nn.Linear(3, 1), DLs([(torch.randn(4, 3), torch.randn(4, 1))], []), F.mse_loss, cbs=[g])
    seen = []
    class Look(Callback):
        def before_fit(self, learn): seen.append([type(cb).__name__ for cb in learn.cbs].count('ThreadGuardCB'))
    learn.fit(1, cbs=[Look()])
    assert seen == [1]  # the user's guard, not a second one
    with pytest.raises(TypeError, match=r"thread_guard='off': must be True, False or a ThreadGuardCB"):
        TrainLearner(nn.Linear(3, 1), learn.dls, thread_guard='off')
    with pytest.raises(ValueError, match='min_extra=-1'): ThreadGuardCB(min_extra=-1)

# ------------------------------------------------------------------ 2. defaults that mislead
@pytest.mark.parametrize('plain', [False, True])
def test_integer_targets_with_the_default_mse_loss_named_at_the_first_batch(plain):
    c = Count()
    learn = (Learner(nn.Linear(4, 3), class_dls(), cbs=[TrainCB(), c]) if plain else
             TrainLearner(nn.Linear(4, 3), class_dls(), cbs=[c]))
    with pytest.raises(TypeError) as e: learn.fit(1)
    assert str(e.value) == ("loss_func=mse_loss got preds (32, 3) float32 and targets (32,) int64; integer targets are "
                            "class indices: pass loss_func=F.cross_entropy for classification (the Learner's default, "
                            "F.mse_loss, is the course's, for regression)")
    assert c.preds == 1 and c.steps == 0  # the first batch, before any update

def test_a_loss_that_fails_names_what_it_was_given():
    dls = class_dls(n_cls=2)
    dls.train = [(x, y + 5) for x,y in dls.train]  # class index 5 or 6 for 3 outputs
    with pytest.raises((IndexError, RuntimeError)) as e: TrainLearner(nn.Linear(4, 3), dls, F.cross_entropy).fit(1)
    msg = str(e.value)
    assert msg.startswith("loss_func=cross_entropy failed as loss_func(preds, targets) on preds (32, 3) float32 and targets (32,) int64: ")
    assert 'pass loss_func=F.cross_entropy' not in msg  # it is the classification loss already
    x = torch.randn(64, 4)
    dls = DLs([(x, x[:, :2])], [])  # float targets of the wrong width
    with pytest.warns(UserWarning), pytest.raises(RuntimeError) as e: TrainLearner(nn.Linear(4, 3), dls).fit(1)
    assert 'loss_func=mse_loss failed as loss_func(preds, targets) on preds (64, 3) float32 and targets (64, 2) float32' in str(e.value)
    assert 'cross_entropy' not in str(e.value)  # float targets: no classification hint

def test_course_defaults_kept_and_regression_trains():
    learn = TrainLearner(nn.Linear(4, 1), DLs([(torch.randn(32, 4), torch.randn(32, 1))]*4, []))
    assert learn.loss_func is F.mse_loss and learn.lr == 0.1 and learn.opt_func is optim.SGD
    learn.fit(1)
    assert isinstance(learn.opt, optim.SGD)

# ------------------------------------------------------------------ 3. swapped arguments
def test_swapped_arguments_refused_at_construction():
    dls = class_dls()
    for args in ((dls, nn.Linear(4, 2)), (DataLoaders(dls.train, dls.valid), nn.Linear(4, 2))):
        with pytest.raises(TypeError, match=r"Learner\(model, dls, \.\.\.\): the model comes first"):
            TrainLearner(*args, F.cross_entropy)
    with pytest.raises(TypeError, match=r"the model comes first \(got Linear then Linear\)"):
        Learner(nn.Linear(4, 2), nn.Linear(4, 2))

# ------------------------------------------------------------------ 4. fastai's names
def test_fit_with_a_number_for_train_says_lr_is_a_keyword():
    learn = TrainLearner(nn.Linear(4, 2), class_dls(), F.cross_entropy)
    with pytest.raises(TypeError) as e: learn.fit(1, 1e-2)
    assert str(e.value) == "fit(1, 0.01): the second argument is `train`; for the learning rate write fit(1, lr=0.01)"
    learn.fit(1, lr=1e-2)
    assert learn.opt.param_groups[0]['lr'] == 1e-2

def test_metrics_argument_validate_and_get_preds_ds_idx():
    torch.manual_seed(0)
    dls = class_dls()
    learn = TrainLearner(nn.Linear(4, 2), dls, F.cross_entropy, lr=0.05, metrics=[MulticlassAccuracy()])
    m = next(cb for cb in learn.cbs if isinstance(cb, MetricsCB))
    learn.fit(2)
    hist = [dict(r) for r in m.history]
    res = learn.validate()
    assert list(res) == ['valid_loss', 'MulticlassAccuracy']
    assert res['valid_loss'] == pytest.approx(hist[-1]['valid_loss'], rel=1e-6)  # the same model, the same pass
    assert res['MulticlassAccuracy'] == pytest.approx(hist[-1]['MulticlassAccuracy'])
    assert [dict(r) for r in m.history] == hist and learn.metrics is m  # the fit's history and learn.metrics untouched
    x,y = torch.cat([b[0] for b in dls.train]),torch.cat([b[1] for b in dls.train])
    tr = learn.validate(ds_idx=0)
    assert tr['valid_loss'] == pytest.approx(F.cross_entropy(learn.model(x), y).item(), rel=1e-5)
    assert learn.get_preds(ds_idx=0)[0].shape == (256, 2) and learn.get_preds(0)[1].shape == (256,)
    assert learn.get_preds()[0].shape == (128, 2)
    with pytest.raises(ValueError, match=r"ds_idx=2: must be 0 \(dls.train\) or 1 \(dls.valid\)"): learn.get_preds(ds_idx=2)
    with pytest.raises(ValueError, match=r"ds_idx=1: dls \(tuple\) has no .valid; pass dl=..."):
        TrainLearner(nn.Linear(4, 2), (dls.train,), F.cross_entropy).validate()
    from miniai.learner import MomentumLearner
    assert any(isinstance(cb, MetricsCB) for cb in MomentumLearner(nn.Linear(4, 2), dls, F.cross_entropy, metrics=[MulticlassAccuracy()],
                                                                   thread_guard=False).cbs)
    with pytest.raises(TypeError, match="not a torcheval metric. fastai's metrics are functions"):
        TrainLearner(nn.Linear(4, 2), dls, F.cross_entropy, metrics=[lambda p, t: (p.argmax(1) == t).float().mean()])
    with pytest.raises(ValueError, match='metrics=... and a MetricsCB in cbs'):
        TrainLearner(nn.Linear(4, 2), dls, F.cross_entropy, cbs=[MetricsCB()], metrics=[MulticlassAccuracy()])

def test_validate_leaves_optimizer_counts_and_rng_alone():
    learn = TrainLearner(nn.Linear(4, 2), class_dls(), F.cross_entropy, cbs=[MetricsCB(accuracy=MulticlassAccuracy())])
    learn.fit(1)
    opt,n = learn.opt,learn.n_updates
    state = torch.get_rng_state()
    res = learn.validate()
    assert learn.opt is opt and learn.n_updates == n and torch.equal(torch.get_rng_state(), state)
    assert set(res) == {'valid_loss', 'accuracy'}
    assert TrainLearner(nn.Linear(4, 2), class_dls(), F.cross_entropy).validate().keys() == {'valid_loss'}

def two_group_learner(seed=0):
    from miniai.groups import group_opt_func
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU()), nn.Linear(16, 2))
    return TrainLearner(model, class_dls(), F.cross_entropy, opt_func=group_opt_func(model, optim.AdamW, n_groups=2))

def test_freeze_unfreeze_over_layer_groups_of_group_opt_func():
    learn = two_group_learner()
    assert len(learn._make_opt(1e-2).param_groups) == 4  # each layer group: a half with weight decay, one without
    groups = learn.layer_groups()
    assert [len(g) for g in groups] == [4, 2]  # body: linear weight+bias, BatchNorm weight+bias; head
    learn.freeze()
    body,head = learn.model
    assert [p.requires_grad for p in body.parameters()] == [False, False, True, True]  # BatchNorm trains on (train_bn)
    assert all(p.requires_grad for p in head.parameters())
    learn.freeze_to(-1, train_bn=False)
    assert not any(p.requires_grad for p in body.parameters())
    w = body[0].weight.detach().clone()
    learn.fit(1, lr=1e-2)
    assert torch.equal(body[0].weight, w)  # frozen: not updated
    learn.unfreeze()
    assert all(p.requires_grad for p in learn.model.parameters())
    with pytest.raises(ValueError, match=r"n=3: must be an int from -2 to 2"): learn.freeze_to(3)
    with pytest.raises(ValueError, match=r"freeze\(\): opt_func builds 1 layer group.*group_opt_func\(model, torch.optim.AdamW, n_groups=2\)"):
        TrainLearner(nn.Linear(4, 2), class_dls(), F.cross_entropy).freeze()

def test_fine_tune_is_fastais_recipe():
    "Frozen epochs at slice(base_lr) with pct_start=0.99, then base_lr/2 over slice(lo, hi), as fastai's fine_tune."
    from miniai.recipes import one_cycle_sched
    learn = two_group_learner()
    body = learn.model[0]
    log = []
    class Lrs(Callback):
        def after_step(self, learn): log.append([g['lr'] for g in learn.opt.param_groups])
        def after_fit(self, learn): log.append(body[0].weight.detach().clone())
    w0 = body[0].weight.detach().clone()
    learn.fine_tune(2, base_lr=2e-3, cbs=[Lrs()])
    frozen,w1,unfrozen,w2 = log[:8],log[8],log[9:25],log[25]
    assert torch.equal(w1, w0) and not torch.equal(w2, w0)
    assert all(p.requires_grad for p in learn.model.parameters())
    # the lrs fastai's formulas give, per param group (4: each layer group's two halves)
    def want(n, lr_max, **kw):
        opt = optim.SGD([{'params': [nn.Parameter(torch.zeros(1))]} for _ in range(4)], lr=1.)
        s = one_cycle_sched(opt, T_max=n, lr_max=lr_max, **kw)
        res = []
        for _ in range(n): res.append([g['lr'] for g in opt.param_groups]); s.step()
        return res
    flat = lambda rows: [v for r in rows for v in r]
    assert flat(frozen) == pytest.approx(flat(want(8, [2e-4, 2e-4, 2e-3, 2e-3], pct_start=0.99)), rel=1e-12)
    assert flat(unfrozen) == pytest.approx(flat(want(16, [1e-5, 1e-5, 1e-3, 1e-3], pct_start=0.3, div=5.)), rel=1e-12)

def test_summary_lists_layers_and_totals():
    learn = two_group_learner()
    learn.freeze()
    s = learn.summary()
    lines = s.splitlines()
    assert lines[0].split() == ['layer', 'output', 'shape', 'params', 'trainable']
    assert [l.split()[0] for l in lines[1:-1]] == ['Linear', 'BatchNorm1d', 'ReLU', 'Linear']
    assert lines[1].split()[1:] == ['[32,', '16]', '80', 'no'] and lines[4].split()[-2:] == ['34', 'yes']
    assert lines[-1] == 'Sequential: 146 parameters, 66 trainable; optimizer AdamW, loss cross_entropy' and repr(s) == s

@pytest.mark.parametrize('name,says', [
    ('export', "learn.export: miniai has no learn.export(): fastai's pickles the whole learner"),
    ('to_fp16', "MixedPrecisionCB('fp16')"), ('add_cb', 'learn.cbs.append(cb)'), ('tta', 'flip_tta(learn)'),
])
def test_fastai_names_miniai_has_not_name_the_miniai_way(name, says):
    learn = TrainLearner(nn.Linear(4, 2), class_dls(), F.cross_entropy)
    with pytest.raises(AttributeError) as e: getattr(learn, name)
    assert says in str(e.value)
    assert not hasattr(learn, name)
    with pytest.raises(AttributeError, match=r"^'TrainLearner' object has no attribute 'no_such_name'$"): learn.no_such_name

def test_recipes_and_recorder_are_the_learners_own_with_only_miniai_learner_imported():
    """fastai's recipes and `learn.recorder` are bound in the Learner's class body (no import adds them any more): in a
    fresh process that imports only miniai.learner, learn.fit_one_cycle trains and records through learn.recorder, and
    fit_flat_cos, fit_sgdr, fine_tune are methods. (Before, they were @patch-ed on by importing miniai.recipes, and
    learn.recorder / learn.fit_one_cycle without it raised an AttributeError naming that import.)"""
    src = textwrap.dedent('''
        import torch, torch.nn.functional as F
        from torch import nn
        from miniai.learner import TrainLearner, Learner
        x = torch.randn(64, 4); y = (x[:, 0] > 0).long()
        from types import SimpleNamespace
        dls = SimpleNamespace(train=[(x[i:i+16], y[i:i+16]) for i in range(0, 64, 16)], valid=[(x, y)])
        learn = TrainLearner(nn.Linear(4, 2), dls, F.cross_entropy, lr=1e-2, thread_guard=False)
        learn.fit_one_cycle(1)
        print(type(learn.recorder).__name__, len(learn.recorder.recs['lr']), learn.recorder is learn.recorder)
        print(all(n in vars(Learner) for n in ('fit_one_cycle', 'fit_flat_cos', 'fit_sgdr', 'fine_tune', 'recorder')),
              type(vars(Learner)['recorder']).__name__)
    ''')
    r = subprocess.run([sys.executable, '-c', src], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ['RecorderCB 4 True', 'True property']

def test_no_module_patches_a_class_of_another():
    "Every object's surface is where it is defined: no fastcore `@patch` (nor `patch_to`) in the package."
    found = [p.name for p in (REPO/'miniai').glob('*.py') if re.search(r'^\s*@patch|patch_to\(|from fastcore.basics import patch', p.read_text(), re.M)]
    assert not found, f"these modules add methods to a class defined elsewhere: {found}"
    from miniai.schedcb import RecorderCB
    assert 'plot_sched' in vars(RecorderCB)  # fastai's `recorder.plot_sched()`: RecorderCB's own method

# ------------------------------------------------------------------ 5. resuming a finished fit
def test_resume_of_a_finished_fit_says_it_is_complete(tmp_path):
    from miniai.checkpoint import CheckpointCB
    torch.manual_seed(0)
    learn = TrainLearner(nn.Linear(4, 2), class_dls(), F.cross_entropy, cbs=[CheckpointCB(tmp_path/'ckpt.pt')])
    learn.fit(2)
    w = learn.model.weight.detach().clone()
    c = Count()
    learn2 = TrainLearner(nn.Linear(4, 2), class_dls(), F.cross_entropy, cbs=[CheckpointCB(tmp_path/'ckpt.pt'), c])
    with pytest.warns(UserWarning) as ws: learn2.fit(2, resume=tmp_path/'ckpt.pt')
    msgs = [str(x.message) for x in ws if 'complete' in str(x.message)]
    assert msgs == [f"resume={str(tmp_path/'ckpt.pt')!r}: the checkpoint's fit is complete (2 of 2 epochs done), so nothing "
                    f"was trained; the model and callbacks now hold its final state. To train more, start a new fit "
                    f"without resume (e.g. learn.fit(2))"]
    assert c.steps == 0 and c.preds == 0 and torch.equal(learn2.model.weight.detach(), w)
    with warnings.catch_warnings():  # an unfinished checkpoint resumes silently, as before
        warnings.simplefilter('error')
        learn3 = TrainLearner(nn.Linear(4, 2), class_dls(), F.cross_entropy, cbs=[CheckpointCB(tmp_path/'b.pt')])
        learn3.fit(1)
        st = learn3.fit_state()
        st['fit']['n_epochs'], st['pos']['epoch'] = 2, 1
        learn3.fit(2, resume=st)
