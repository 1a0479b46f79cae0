"""Checkpoints (miniai.checkpoint, miniai.learner): exact resume at every stop point (also across a real kill -9 and a
real Ctrl-C), resumes refused for another fit, the NaN guard, early stopping and the best model."""
import importlib.util, os, random, re, signal, subprocess, sys, time
from copy import deepcopy
from functools import partial
from pathlib import Path
import pytest
from conftest import slow
import torch
import torch.nn.functional as F
from torch import nn, optim
from fastcore.test import test_eq as eq_
from torcheval.metrics import MulticlassAccuracy
from miniai.learner import TrainLearner, Callback, MetricsCB, GradAccumCB, CancelFitException, load_checkpoint
from miniai.safefile import load_state
from miniai.augment import BatchTransformCB
from miniai.checkpoint import CheckpointCB, TerminateOnNaNCB, NonFiniteLossError, EarlyStoppingCB, SaveBestCB
from miniai.sched import BatchSchedCB, EpochSchedCB, OneCycle, CosineAnnealing, RecorderCB
from miniai.core import clean_stale_tmp
from loaders import DLs, ShuffledDL
from training_helpers import reg_batches, class_data, class_dls, HookLog, sgd_mom, quiet_metrics, same

REPO = Path(__file__).resolve().parents[1]

def no_time(hist): return [{k:v for k,v in r.items() if k != 'time'} for r in hist]

@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

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
    mcb = MetricsCB(quiet=True)
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

class Explode(Callback):
    "Makes the loss `val` at (epoch 1, batch 3) of the training or the validation pass; keeps the files' bytes then."
    order = TerminateOnNaNCB.order - 1
    def __init__(self, val, training, files=()): self.val,self.training,self.files,self.before = val,training,files,None
    def after_loss(self, learn):
        if (learn.epoch, learn.iter, learn.training) == (1, 3, self.training):
            self.before = {f: f.read_bytes() for f in self.files}
            learn.loss = learn.loss * self.val

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

SEQ_A,SEQ_B = [2., 3., 3.5, 2.2, 1., 1., 1.],[3., 2., 2.5, 2.2, 1., 1., 1.]

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

@slow
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
    assert 'FitInterrupted: SIGINT' in err, err  # a KeyboardInterrupt that names the signal (miniai.checkpoint)
    assert str(ck) in err and 'resume=' in err, err
    st = load_checkpoint(ck)
    assert 0 < st['pos']['n_updates'] < 30 and not st['pos']['mid_batch']
    spec = importlib.util.spec_from_file_location('ctrl_c_job', job)
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    ref = mod.make_learn(tmp_path/'ref.pt'); ref.fit(3)
    res = mod.make_learn(ck); res.fit(3, resume=ck)
    same(result(res), result(ref))

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

def test_resumed_optimizer_state_has_the_parameters_layout(tmp_path):
    """A checkpoint holds contiguous tensors; on resume the optimizer's state and gradients take the parameters' memory
    layout again (ChannelsLastCB's are channels-last), so AdamW's kernels see what they saw before the stop."""
    from miniai.precision import ChannelsLastCB
    def learn():
        torch.manual_seed(0)
        m = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Flatten(), nn.Linear(4*6*6, 2))
        x = torch.randn(64, 2, 8, 8); y = (x.mean((1, 2, 3)) > 0).long()
        b = [(x[i:i+16], y[i:i+16]) for i in range(0, 64, 16)]
        return TrainLearner(m, DLs(b, b[:1]), F.cross_entropy, lr=1e-2, opt_func=optim.AdamW,
                            cbs=[ChannelsLastCB(), quiet_metrics(), CheckpointCB(tmp_path/'ck.pt', verbose=False)])
    with pytest.raises(KeyboardInterrupt): learn().fit(2, cbs=StopAt('after_batch', (0, True, 1), KeyboardInterrupt))
    seen = {}
    class Look(Callback):
        order = 200
        def before_batch(self, learn):
            w = learn.model[0].weight
            seen.setdefault('strides', (w.stride(), learn.opt.state[w]['exp_avg'].stride()))
    learn().fit(2, resume=tmp_path/'ck.pt', cbs=Look())
    cl = torch.empty(4, 2, 3, 3).to(memory_format=torch.channels_last).stride()
    assert seen['strides'] == (cl, cl)

# --- retention: CheckpointCB(keep_last=k), SaveBestCB(top_k=k) (issue 19) ---
import miniai.checkpoint as mck, miniai.safefile as msf

def folder(d): return {f.name: f.read_bytes() for f in sorted(d.iterdir())}

def keep_learn(d, keep_last=2, every=6, *extra):
    return make_learn(CheckpointCB(d/'ck.pt', every_epochs=None, every_updates=every, keep_last=keep_last, verbose=False), *extra)

def test_keep_last_keeps_the_newest(tmp_path, one_thread):
    "keep_last=2 over 5 saves (updates 6..30): the 2 newest numbered files and ck.pt, which is the newest; other files stay."
    others = ['ck-u12.pt', 'ck-u000003.ptx', 'other-u000001.pt', 'ck.notes']  # not of the scheme: never deleted
    for nm in others: (tmp_path/nm).write_text('mine')
    learn = keep_learn(tmp_path)
    learn.fit(3)
    eq_(sorted(f.name for f in tmp_path.iterdir()), sorted(['ck.pt', 'ck-u000024.pt', 'ck-u000030.pt'] + others))
    eq_((tmp_path/'ck.pt').read_bytes(), (tmp_path/'ck-u000030.pt').read_bytes())
    eq_(load_checkpoint(tmp_path/'ck-u000024.pt')['pos']['n_updates'], 24)
    eq_([p.name for p in learn.cbs[-1].kept()], ['ck-u000024.pt', 'ck-u000030.pt'])
    for nm in others: eq_((tmp_path/nm).read_text(), 'mine')

def test_keep_last_none_is_one_file(tmp_path):
    make_learn(CheckpointCB(tmp_path/'ck.pt', every_updates=6, verbose=False)).fit(2)
    eq_([f.name for f in tmp_path.iterdir()], ['ck.pt'])

def test_keep_last_copies_without_hard_links(tmp_path, monkeypatch):
    "On a filesystem without hard links the numbered files are whole copies."
    def no_link(*a): raise OSError(1, 'Operation not permitted')
    monkeypatch.setattr(mck.os, 'link', no_link)
    keep_learn(tmp_path, keep_last=3).fit(2)
    eq_(sorted(f.name for f in tmp_path.iterdir()), ['ck-u000006.pt', 'ck-u000012.pt', 'ck-u000018.pt', 'ck.pt'])
    eq_((tmp_path/'ck.pt').read_bytes(), (tmp_path/'ck-u000018.pt').read_bytes())
    assert (tmp_path/'ck.pt').stat().st_ino != (tmp_path/'ck-u000018.pt').stat().st_ino

def _half_writer(real):
    "`atomic_write` whose write stops half-way with an OSError (a full disk)."
    def aw(path, write):
        def half(f):
            buf = __import__('io').BytesIO(); write(buf); f.write(buf.getvalue()[:len(buf.getvalue())//2])
            raise OSError(28, 'No space left on device')
        real(path, half)
    return aw

@pytest.mark.parametrize('stage', ['checkpoint', 'copy'])
def test_keep_last_interrupted_write_deletes_nothing(tmp_path, monkeypatch, stage):
    """A save that fails half-way (the checkpoint itself, or the numbered copy on a filesystem without hard links):
    every file stays whole and nothing is deleted; the fit ends with the error."""
    seen = {}
    class Break(Callback):
        order = CheckpointCB.order - 1
        def cleanup_batch(self, learn):
            if learn.n_updates == 24 and not seen:  # before the 4th save: the folder as it is, then a broken writer
                seen.update(folder(tmp_path))
                if stage == 'checkpoint': monkeypatch.setattr(msf, 'atomic_write', _half_writer(msf.atomic_write))
                else:
                    monkeypatch.setattr(mck.os, 'link', lambda *a: (_ for _ in ()).throw(OSError(1, 'no links')))
                    monkeypatch.setattr(mck, 'atomic_write', _half_writer(mck.atomic_write))
    learn = keep_learn(tmp_path, 2, 6, Break())
    with pytest.raises(OSError, match='No space left'): learn.fit(3)
    eq_(sorted(seen), ['ck-u000012.pt', 'ck-u000018.pt', 'ck.pt'])
    after = folder(tmp_path)
    if stage == 'copy':  # ck.pt was written whole; its numbered copy failed: no numbered file went
        eq_(load_checkpoint(tmp_path/'ck.pt')['pos']['n_updates'], 24)
        after.pop('ck.pt'); seen.pop('ck.pt')
    eq_(after, seen)

def test_keep_last_only_the_writer_deletes(tmp_path, monkeypatch):
    "A process that does not write the files (rank > 0) makes no numbered file and deletes none."
    old = tmp_path/'ck-u000001.pt'; old.write_bytes(b'x')
    monkeypatch.setattr(mck, '_writes_files', lambda: False)
    keep_learn(tmp_path, keep_last=1).fit(2)
    eq_(sorted(f.name for f in tmp_path.iterdir()), ['ck-u000001.pt', 'ck.pt'])

@pytest.mark.parametrize('exc', [CancelFitException, RuntimeError], ids=['stop', 'crash'])
def test_keep_last_resume_numbers_on(tmp_path, one_thread, exc):
    "A resumed fit numbers on from the checkpoint's update count (saves every 4 updates); the earlier run's files count in keep_last."
    learn = keep_learn(tmp_path, 3, 4)
    with pytest.raises(RuntimeError) if exc is RuntimeError else __import__('contextlib').nullcontext():
        learn.fit(3, cbs=StopAt('after_batch', (1, True, 4), exc))  # after update 15: saves 4, 8, 12 (+15 on a stop)
    first = [4, 8, 12] if exc is RuntimeError else [8, 12, 15]  # a crash writes no checkpoint; a stop does
    eq_([p.name for p in learn.cbs[-1].kept()], [f'ck-u{n:06d}.pt' for n in first])
    learn = keep_learn(tmp_path, 3, 4)
    learn.fit(3, resume=tmp_path/'ck.pt')
    eq_(sorted(f.name for f in tmp_path.iterdir()), ['ck-u000020.pt', 'ck-u000024.pt', 'ck-u000028.pt', 'ck.pt'])
    same(result(learn), reference())

@pytest.mark.parametrize('kw', [dict(keep_last=0), dict(keep_last=-1), dict(keep_last=1.5), dict(keep_last=True),
                                dict(keep_last='2'), dict(keep_last=2.0)])
def test_keep_last_bad_values(kw):
    with pytest.raises(ValueError, match=rf"keep_last={kw['keep_last']!r}: must be an int >= 1 .*or None"): CheckpointCB(**kw)

@pytest.mark.parametrize('top_k', [0, -2, 1.5, 2.0, True, None, '3'])
def test_top_k_bad_values(top_k):
    with pytest.raises(ValueError, match=rf"top_k={top_k!r}: must be an int >= 1"): SaveBestCB(top_k=top_k)

class Files(Callback):
    "The folder's file names after each epoch (after SaveBestCB)."
    order = 300
    def __init__(self, d): self.d,self.seen = d,[]
    def after_epoch(self, learn):
        if not learn.training: self.seen.append(sorted(f.name for f in self.d.iterdir()))

SEQ_K = [3., 2., 2.5, 1.5, 1.8, 2.2]

def test_top_k_keeps_the_best_epochs(tmp_path):
    best,we,files = tmp_path/'best.pt',WeightsAtEpochEnd(),Files(tmp_path)
    sb = SaveBestCB(path=best, top_k=2)
    learn = small_class_learn(FakeCol('valid_loss', SEQ_K), sb, we, files)
    learn.fit(len(SEQ_K))
    f = lambda e: f'best-e{e + 1:03d}-valid_loss={SEQ_K[e]:g}.pt'
    eq_(files.seen, [sorted(x + ['best.pt']) for x in
                     [[f(0)], [f(0), f(1)], [f(1), f(2)], [f(1), f(3)], [f(3), f(4)], [f(3), f(4)]]])
    eq_(sb.top, [[1.5, 3, f(3)], [1.8, 4, f(4)]])
    eq_((sb.best, sb.best_epoch), (1.5, 3))
    for e in (3, 4):
        saved = load_state(tmp_path/f(e))[1]['model']
        for k,v in we.w[e].items(): assert torch.equal(saved[k], v), (e, k)
    eq_(best.read_bytes(), (tmp_path/f(3)).read_bytes())
    for k,v in learn.model.state_dict().items(): assert torch.equal(v, we.w[3][k]), k  # load_best: the best epoch's

def test_top_k_max_mode(tmp_path):
    seq = [.5, .7, .6, .65, .9]
    sb = SaveBestCB('accuracy', path=tmp_path/'b.pt', top_k=3)
    small_class_learn(FakeCol('accuracy', seq), sb).fit(len(seq))
    eq_([(v, e) for v,e,_ in sb.top], [(.9, 4), (.7, 1), (.65, 3)])
    eq_(sorted(f.name for f in tmp_path.iterdir()), ['b-e002-accuracy=0.7.pt', 'b-e004-accuracy=0.65.pt',
                                                     'b-e005-accuracy=0.9.pt', 'b.pt'])

def test_top_k_one_is_one_file(tmp_path):
    sb = SaveBestCB(path=tmp_path/'best.pt')
    small_class_learn(FakeCol('valid_loss', SEQ_K), sb).fit(len(SEQ_K))
    eq_([f.name for f in tmp_path.iterdir()], ['best.pt'])
    eq_(sb.state_dict(), dict(best=1.5, best_epoch=3, wait=2))  # as before top_k: no 'top'

def test_top_k_failed_write_deletes_nothing(tmp_path, monkeypatch):
    "The epoch that enters the top 2 cannot be written: the file it would push out stays, and so does best.pt."
    seen = {}
    class Break(Callback):
        order = 50
        def after_epoch(self, learn):
            if not learn.training and learn.epoch == 3:
                seen.update(folder(tmp_path))
                monkeypatch.setattr(msf, 'atomic_write', _half_writer(msf.atomic_write))
    sb = SaveBestCB(path=tmp_path/'best.pt', top_k=2)
    with pytest.raises(OSError, match='No space'): small_class_learn(FakeCol('valid_loss', SEQ_K), Break(), sb).fit(len(SEQ_K))
    eq_(sorted(seen), ['best-e002-valid_loss=2.pt', 'best-e003-valid_loss=2.5.pt', 'best.pt'])
    eq_(folder(tmp_path), seen)
    eq_([e for _,e,_ in sb.top], [1, 2])

@pytest.mark.parametrize('exc', [CancelFitException, RuntimeError], ids=['stop', 'crash'])
def test_top_k_resume_continues_the_ranking(tmp_path, one_thread, exc):
    """Stopped in epoch 4 (a stop: the checkpoint of the stop; a crash: the last epoch-end checkpoint, which holds
    SaveBestCB's state of that epoch), resumed by a new learner: the same files, ranking and best weights as one fit."""
    (tmp_path/'a').mkdir(); (tmp_path/'b').mkdir()
    def learn_(d): return small_class_learn(FakeCol('valid_loss', SEQ_K), SaveBestCB(path=d/'best.pt', top_k=2),
                                            EarlyStoppingCB(patience=3), CheckpointCB(d/'ck.pt', verbose=False))
    ref = learn_(tmp_path/'a'); ref.fit(len(SEQ_K))
    learn = learn_(tmp_path/'b')
    with pytest.raises(RuntimeError) if exc is RuntimeError else __import__('contextlib').nullcontext():
        learn.fit(len(SEQ_K), cbs=StopAt('after_batch', (3, True, 1), exc))
    eq_([e for _,e,_ in learn.cbs[-3].top], [1, 2])
    eq_(load_checkpoint(tmp_path/'b'/'ck.pt')['cbs']['SaveBestCB']['top'], learn.cbs[-3].top)
    learn = learn_(tmp_path/'b')
    learn.fit(len(SEQ_K), resume=tmp_path/'b'/'ck.pt')
    sb,sb_ref = learn.cbs[-3],ref.cbs[-3]
    eq_(sb.top, sb_ref.top)
    eq_((sb.best, sb.best_epoch, learn.cbs[-2].wait), (sb_ref.best, sb_ref.best_epoch, ref.cbs[-2].wait))
    a,b = folder(tmp_path/'a'),folder(tmp_path/'b')
    eq_(sorted(a), sorted(b))
    for nm in a:
        if nm != 'ck.pt': eq_(load_state(tmp_path/'a'/nm)[1]['model'].keys(), load_state(tmp_path/'b'/nm)[1]['model'].keys())
    for k,v in learn.model.state_dict().items(): assert torch.equal(v, ref.model.state_dict()[k]), k

def test_top_k_loads_a_state_without_top(tmp_path):
    "A checkpoint's SaveBestCB state from before top_k (no 'top') still loads: the ranking starts afresh, the best is kept."
    sb = SaveBestCB(path=tmp_path/'best.pt', top_k=2)
    sb.load_state_dict(dict(best=1.0, best_epoch=0, wait=0))
    small_class_learn(FakeCol('valid_loss', [9., 2., 1.5]), sb).fit(2)
    eq_((sb.best, sb.best_epoch), (1.0, 0))
    eq_([(v, e) for v,e,_ in sb.top], [(2., 1), (9., 0)])

def test_top_k_with_min_delta(tmp_path):
    """min_delta: an epoch enters the top 2 when fewer are kept or it beats the worst by more than min_delta; best.pt is
    `best_epoch`'s (an improvement beats the best by more than min_delta), which need not be the lowest value kept."""
    seq,we = [1.0, 0.95, 0.9, 0.5],WeightsAtEpochEnd()
    sb,seen = SaveBestCB(path=tmp_path/'best.pt', top_k=2, min_delta=0.1),[]
    class Look(Callback):
        order = 300
        def after_epoch(self, learn):
            if not learn.training: seen.append(([e for _,e,_ in sb.top], sb.best_epoch))
    small_class_learn(FakeCol('valid_loss', seq), sb, we, Look()).fit(len(seq))
    # epoch 1 enters (only one kept) but does not improve; epoch 2 (0.9) beats neither 1.0 - 0.1 nor 0.95 - 0.1
    eq_(seen, [([0], 0), ([1, 0], 0), ([1, 0], 0), ([3, 1], 3)])
    saved = load_state(tmp_path/'best.pt')[1]['model']
    for k,v in we.w[3].items(): assert torch.equal(saved[k], v), k
    eq_(sorted(f.name for f in tmp_path.iterdir()), ['best-e002-valid_loss=0.95.pt', 'best-e004-valid_loss=0.5.pt', 'best.pt'])

# ------------------------------------------------------------------ the fit's position (FitPosition)
def torch_dl_learn(*cbs, seed=1):
    "A learner on torch DataLoaders: the shuffled training loader draws its base seed when its iterator is made."
    from torch.utils.data import DataLoader, TensorDataset
    torch.manual_seed(seed)
    ds = TensorDataset(_X[:256], _Y[:256])
    dls = DLs(DataLoader(ds, batch_size=32, shuffle=True), DataLoader(TensorDataset(_X[:96], _Y[:96]), batch_size=32))
    model = nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.2), nn.ReLU(), nn.Linear(16, 2))
    return TrainLearner(model, dls, F.cross_entropy, lr=0.05, opt_func=optim.AdamW, cbs=list(cbs), thread_guard=False)

class Seen(Callback):
    "The batches each pass saw, as (epoch, training, iter, sum of the targets)."
    order = 1
    def __init__(self): self.seen = []
    def before_batch(self, learn): self.seen.append((learn.epoch, learn.training, learn.iter, int(learn.batch[1].sum())))

def test_resume_replays_a_torch_dataloaders_order(tmp_path):
    """A torch DataLoader draws from torch's generator when its iterator is made (the base seed) and at its first batch
    (the order): a mid-epoch resume replays both from the pass's start, so it sees the same batches and ends bit for bit
    as the uninterrupted fit (the generators were replayed after the iterator was made, and the order differed)."""
    ref_seen,ref = Seen(),torch_dl_learn()
    torch.manual_seed(5); ref.fit(2, cbs=ref_seen)
    seen,ck = Seen(),tmp_path/'ck.pt'
    learn = torch_dl_learn(CheckpointCB(ck, verbose=False))
    torch.manual_seed(5)
    with pytest.raises(KeyboardInterrupt): learn.fit(2, cbs=[seen, StopAt('after_batch', (1, True, 2), KeyboardInterrupt)])
    eq_(load_state(ck)[1]['pos']['batch'], 3)
    again = torch_dl_learn(CheckpointCB(ck, verbose=False))
    torch.manual_seed(99); again.fit(2, cbs=seen, resume=ck)
    eq_(seen.seen, ref_seen.seen)
    for k,v in ref.model.state_dict().items(): assert torch.equal(again.model.state_dict()[k], v), k

def test_a_resumed_pass_cancelled_at_its_start_skips_no_validation_batch(tmp_path):
    """The training batches a resume skips belong to the resumed training pass: when its `before_epoch` cancels it,
    the validation pass after it still runs all its batches (it skipped as many as the training pass had done)."""
    from miniai.learner import CancelEpochException
    ck = tmp_path/'ck.pt'
    learn = torch_dl_learn(CheckpointCB(ck, verbose=False))
    with pytest.raises(KeyboardInterrupt): learn.fit(2, cbs=StopAt('after_batch', (1, True, 1), KeyboardInterrupt))
    class SkipTraining(Callback):
        def before_epoch(self, learn):
            if learn.training: raise CancelEpochException()
    seen = Seen()
    torch_dl_learn(CheckpointCB(ck, verbose=False)).fit(2, cbs=[seen, SkipTraining()], resume=ck)
    eq_(seen.seen and [(e, i) for e,t,i,_ in seen.seen], [(1, 0), (1, 1), (1, 2)])  # epoch 1's three validation batches

def test_lr_find_and_validate_keep_the_fit_position():
    "`lr_find` and `validate` run fits of their own: afterwards `fit_pos` (pos, mid_batch, resuming) is the learner's again."
    learn = torch_dl_learn()
    learn.fit(1)
    fp = learn.fit_pos
    learn.lr_find(max_epochs=1, plot=False)
    assert learn.fit_pos is fp and (learn.pos, learn.mid_batch, learn.resuming) == ((1, 'train', 0), False, False)
    learn.validate()
    assert learn.fit_pos is fp and learn.pos == (1, 'train', 0)
