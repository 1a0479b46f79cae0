"""Tests of miniai.callbacks (issue 19): GradClipCB against torch's clip_grad_norm_ in hand-written loops (plain, fp16
GradScaler, accumulation, accelerate), EMACB against a hand-computed average and across an exact resume, CSVLoggerCB
and TensorBoardCB across an interrupted and resumed fit (event files read back with tensorboard's reader), the logger."""
import csv, json, logging, math, os, subprocess, sys
from pathlib import Path
import pytest
from conftest import slow
import torch
import torch.nn.functional as F
from torch import nn, optim
from miniai.learner import Learner, TrainCB, GradAccumCB, MetricsCB, Callback
from miniai.checkpoint import CheckpointCB
from miniai.precision import MixedPrecisionCB
from miniai.callbacks import GradClipCB, rec_grad_norm, EMACB, ema_decay, CSVLoggerCB, TensorBoardCB, logger
from loaders import DLs
from training_helpers import reg_batches, quiet_metrics

ROOT = Path(__file__).parent.parent

@pytest.fixture(autouse=True)
def one_thread():
    "One thread and no thread guard: the same float sums in every fit, so resumed runs can be compared exactly."
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

def model(seed=1, bn=False):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 16), *([nn.BatchNorm1d(16)] if bn else []), nn.ReLU(), nn.Linear(16, 2))

def big_batches(n=6, scale=10.):
    return [(x, y*scale) for x,y in reg_batches(n)]

def fit(m, bs, *cbs, epochs=1, lr=0.05, valid=False, opt_func=optim.SGD, **kw):
    learn = Learner(m, DLs(bs, bs[:2]), F.mse_loss, lr=lr, cbs=[TrainCB(), *cbs], opt_func=opt_func, thread_guard=False)
    learn.fit(epochs, valid=valid, **kw)
    return learn

def assert_same_params(a, b, eps=1e-6):
    for (k,p),q in zip(a.named_parameters(), b.parameters()): torch.testing.assert_close(p, q, atol=eps, rtol=eps, msg=k)

# --- GradClipCB ---
@pytest.mark.parametrize('norm_type', [2.0, 1.0, math.inf])
def test_gradclip_equals_clip_grad_norm(norm_type):
    bs = big_batches()
    m,clip = model(),GradClipCB(0.5, norm_type)
    fit(m, bs, clip)
    ref,norms = model(),[]
    opt = optim.SGD(ref.parameters(), lr=0.05)
    for x,y in bs:
        F.mse_loss(ref(x), y).backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.5, norm_type)))
        opt.step(); opt.zero_grad()
    assert_same_params(m, ref)
    assert clip.norms == pytest.approx(norms, rel=1e-5)
    assert min(norms) > 0.5  # every step was clipped: the test would see a missing clip
    unclipped = model(); fit(unclipped, bs)
    assert not torch.allclose(unclipped[0].weight, m[0].weight, atol=1e-3)

def test_gradclip_bounds_a_real_step():
    "One step on a batch whose gradient norm is ~1e3: the weights move by lr * max_norm at most."
    bs = big_batches(1, scale=1000.)
    m = model(); w0 = torch.cat([p.detach().flatten().clone() for p in m.parameters()])
    clip = GradClipCB(1.0)
    fit(m, bs, clip, lr=0.1)
    w1 = torch.cat([p.detach().flatten() for p in m.parameters()])
    assert clip.norms[0] > 100
    assert (w1 - w0).norm() == pytest.approx(0.1, rel=1e-4)

def test_gradclip_accumulation_once_per_update():
    bs = big_batches(7)
    m,clip = model(),GradClipCB(0.5)
    fit(m, bs, GradAccumCB(3), clip)
    ref,norms = model(),[]
    opt = optim.SGD(ref.parameters(), lr=0.05)
    for grp in (bs[:3], bs[3:6], bs[6:]):  # the last group is a single batch
        for x,y in grp: (F.mse_loss(ref(x), y) / len(grp)).backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.5)))
        opt.step(); opt.zero_grad()
    assert len(clip.norms) == 3
    assert clip.norms == pytest.approx(norms, rel=1e-5)
    assert_same_params(m, ref)

@pytest.mark.parametrize('scale', [0.01, 10.])  # 10: the first steps overflow fp16 and are skipped
def test_gradclip_fp16_clips_unscaled_grads(scale):
    bs = big_batches(6, scale=scale)
    m,clip = model(),GradClipCB(0.5)
    learn = fit(m, bs, MixedPrecisionCB('fp16', 'cpu'), clip)
    ref,norms,n = model(),[],0
    opt,sc = optim.SGD(ref.parameters(), lr=0.05),torch.amp.GradScaler('cpu')
    for x,y in bs:
        with torch.autocast('cpu', dtype=torch.float16): loss = F.mse_loss(ref(x), y)
        sc.scale(loss).backward(); sc.unscale_(opt)
        norms.append(float(torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.5)))
        s = sc.get_scale(); sc.step(opt); sc.update(); n += sc.get_scale() >= s
        opt.zero_grad()
    assert_same_params(m, ref)
    assert learn.n_updates == n
    fin = [(a, b) for a,b in zip(clip.norms, norms) if math.isfinite(b)]
    assert len(fin) >= 2 and all(a == pytest.approx(b, rel=1e-4) for a,b in fin)
    if scale < 1: assert n == 6 and max(clip.norms) < 1e3  # scaled gradients would have a norm ~65536 times larger

def test_gradclip_under_accelerate():
    pytest.importorskip('accelerate')
    from miniai.accel import AccelerateCB
    bs = big_batches()
    m,clip = model(),GradClipCB(0.5)
    fit(m, bs, AccelerateCB(cpu=True), clip)
    ref = model(); opt = optim.SGD(ref.parameters(), lr=0.05); norms = []
    for x,y in bs:
        F.mse_loss(ref(x), y).backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.5)))
        opt.step(); opt.zero_grad()
    assert_same_params(m, ref)
    assert clip.norms == pytest.approx(norms, rel=1e-5)

def test_rec_grad_norm_in_recorder():
    from miniai.schedcb import RecorderCB
    bs = big_batches()
    clip,rec = GradClipCB(0.5),RecorderCB(gn=rec_grad_norm)
    fit(model(), bs, clip, rec)
    assert rec.recs['gn'] == clip.norms and len(clip.norms) == 6
    with pytest.raises(ValueError, match='GradClipCB'): fit(model(), bs, RecorderCB(gn=rec_grad_norm))

@pytest.mark.parametrize('kw,match', [(dict(max_norm=0), 'max_norm=0'), (dict(max_norm=-1.), 'max_norm'),
                                      (dict(max_norm='1'), 'max_norm'), (dict(max_norm=1, norm_type=0), 'norm_type')])
def test_gradclip_bad_args(kw, match):
    with pytest.raises((ValueError, TypeError), match=match): GradClipCB(**kw)

# --- EMACB ---
class Snap(Callback):
    order = 5  # before EMACB
    def before_fit(self, learn): self.ws = []
    def after_step(self, learn): self.ws.append({k: v.clone() for k,v in learn.model.state_dict().items()})

@pytest.mark.parametrize('decay,warmup,every', [(0.9, False, 1), (0.8, True, 2), (0.99, True, 3)])
def test_ema_hand_computed(decay, warmup, every):
    bs = [(x, y) for x,y in big_batches(5, 1.)]
    m,ema,snap = model(bn=True),EMACB(decay, warmup=warmup, every=every),Snap()
    fit(m, bs, ema, snap, epochs=2)
    hand,n = {k: v.clone() for k,v in model(bn=True).state_dict().items()},0
    params = {k for k,_ in m.named_parameters()}
    for i,w in enumerate(snap.ws):
        if (i + 1) % every: continue
        d = min(decay, 1 - (1 + n) ** (-2/3)) if warmup else decay
        n += 1
        hand = {k: (d*hand[k] + (1 - d)*w[k]) if k in params else w[k].clone() for k in hand}
    assert ema.n == 10 // every and ema.n_steps == 10
    for k in hand:
        if k in params: torch.testing.assert_close(ema.ema[k], hand[k], atol=1e-6, rtol=1e-6)
        else: assert torch.equal(ema.ema[k], snap.ws[(10 // every) * every - 1][k]), k  # buffers: copied at the last EMA update
    assert not torch.allclose(ema.ema['0.weight'], m[0].weight)

def test_ema_decay_warmup():
    assert ema_decay(0, 0.999) == 0.999
    assert ema_decay(0, 0.999, warmup=True) == 0.
    assert ema_decay(7, 0.999, warmup=True) == pytest.approx(1 - 8 ** (-2/3))
    assert ema_decay(10**9, 0.999, warmup=True) == 0.999

def test_ema_validate_and_save(tmp_path):
    bs = big_batches(6, 1.)
    m,ema,met = model(),EMACB(0.5, validate_ema=True),quiet_metrics()
    learn = fit(m, bs, ema, met, valid=True)
    live = {k: v.clone() for k,v in m.state_dict().items()}
    em = ema.ema_model()
    with torch.no_grad(): vl = sum(F.mse_loss(em(x), y).item()*len(y) for x,y in bs[:2]) / sum(len(y) for _,y in bs[:2])
    assert met.history[-1]['valid_loss'] == pytest.approx(vl, rel=1e-6)
    for k,v in m.state_dict().items(): assert torch.equal(v, live[k])  # live weights back after validation
    ema.save(tmp_path/'ema.pt'); learn.load(tmp_path/'ema.pt')
    for k,v in m.state_dict().items(): assert torch.equal(v, ema.ema[k])
    learn.save(tmp_path/'live.pt')  # and the live set with learn.save, as always

class StopAt(Callback):
    order = 50
    def __init__(self, at): self.at = at
    def after_batch(self, learn):
        if (learn.epoch, learn.training, learn.iter) == self.at: raise KeyboardInterrupt()

def _learn(tmp, *cbs, ck_every=4, ck_epochs=None):
    met = quiet_metrics()
    ck = CheckpointCB(tmp/'ck.pt', every_epochs=ck_epochs, every_updates=ck_every, on_interrupt=False, verbose=False)
    return Learner(model(bn=True), DLs(big_batches(6, 1.), big_batches(2, 1.)), F.mse_loss, lr=0.02,
                   cbs=[TrainCB(), met, ck, *cbs], thread_guard=False),met

def _interrupted_then_resumed(tmp, make_cbs, at=(2, True, 1), n_epochs=3, **kw):
    "A fit stopped by Ctrl-C at `at` without a checkpoint there (the last one is some updates older), then resumed."
    learn,_ = _learn(tmp, *make_cbs(), **kw)
    with pytest.raises(KeyboardInterrupt): learn.fit(n_epochs, cbs=StopAt(at))
    cbs = make_cbs()
    learn,met = _learn(tmp, *cbs, **kw)
    learn.fit(n_epochs, resume=tmp/'ck.pt')
    return learn,met,cbs

@pytest.mark.parametrize('every', [1, 4])
def test_ema_resumes_exactly(tmp_path, every):
    (tmp_path/'a').mkdir(); (tmp_path/'b').mkdir()
    ref = EMACB(0.9, warmup=True, every=every)
    learn,_ = _learn(tmp_path/'a', ref); learn.fit(3)
    _,_,(ema,) = _interrupted_then_resumed(tmp_path/'b', lambda: [EMACB(0.9, warmup=True, every=every)])
    assert (ema.n, ema.n_steps) == (ref.n, ref.n_steps) == (18 // every, 18)
    for k in ref.ema: assert torch.equal(ema.ema[k], ref.ema[k]), k

@pytest.mark.parametrize('kw,match', [(dict(decay=1.), 'decay=1'), (dict(decay=-0.1), 'decay'), (dict(every=0), 'every=0'),
                                      (dict(warmup='yes'), 'warmup')])
def test_ema_bad_args(kw, match):
    with pytest.raises((ValueError, TypeError), match=match): EMACB(**kw)

# --- CSVLoggerCB ---
def read_csv(p): return [{k:v for k,v in r.items() if k != 'time'} for r in csv.DictReader(open(p))]

def test_csv_rows_and_append(tmp_path):
    p = tmp_path/'m.csv'
    learn,met = _learn(tmp_path, CSVLoggerCB(p)); learn.fit(2)
    rows = read_csv(p)
    assert [r['epoch'] for r in rows] == ['1', '2']
    assert [float(r['valid_loss']) for r in rows] == [h['valid_loss'] for h in met.history]  # full precision
    learn.fit(1); assert len(read_csv(p)) == 1  # a new fit starts a new file by default
    learn.fit(2, cbs=CSVLoggerCB(p, append=True))
    assert [r['epoch'] for r in read_csv(p)] == ['1', '1', '2']

@pytest.mark.parametrize('ck', [dict(ck_every=4), dict(ck_every=None, ck_epochs=1)])
def test_csv_no_duplicated_epochs_after_resume(tmp_path, ck):
    (tmp_path/'a').mkdir(); (tmp_path/'b').mkdir()
    learn,_ = _learn(tmp_path/'a', CSVLoggerCB(tmp_path/'a'/'m.csv')); learn.fit(3)
    p = tmp_path/'b'/'m.csv'
    p.write_text('epoch,train_loss,valid_loss,time\n1,9.0,9.0,0.1\n')  # an earlier fit's row, kept with append
    # stopped in epoch 3 after update 14: the file has epochs 1-2, the checkpoint (update 12) is from before epoch 2's validation
    _interrupted_then_resumed(tmp_path/'b', lambda: [CSVLoggerCB(p, append=True)], **ck)
    ref,got = read_csv(tmp_path/'a'/'m.csv'),read_csv(p)
    assert got[0]['train_loss'] == '9.0'
    assert got[1:] == ref and [r['epoch'] for r in got] == ['1', '1', '2', '3']

def test_csv_resume_rewrites_a_deleted_file_from_the_history(tmp_path):
    "A resume whose CSV file was deleted (no earlier fits' rows expected): the file is written again from the resumed history."
    (tmp_path/'a').mkdir(); (tmp_path/'b').mkdir()
    learn,_ = _learn(tmp_path/'a', CSVLoggerCB(tmp_path/'a'/'m.csv')); learn.fit(3)
    p = tmp_path/'b'/'m.csv'
    def make():
        if p.exists(): p.unlink()  # deleted between the stop and the resume
        return [CSVLoggerCB(p)]
    _interrupted_then_resumed(tmp_path/'b', make)
    assert read_csv(p) == read_csv(tmp_path/'a'/'m.csv')

def test_csv_failed_write_leaves_old_file(tmp_path, monkeypatch):
    import miniai.core
    p = tmp_path/'m.csv'
    learn,_ = _learn(tmp_path, CSVLoggerCB(p)); learn.fit(1)
    old = p.read_bytes()
    def full(*a): raise OSError(28, 'No space left on device')
    monkeypatch.setattr(miniai.core.os, 'replace', full)
    with pytest.raises(OSError): learn.fit(2, cbs=CSVLoggerCB(p))
    assert p.read_bytes() == old
    assert [f.name for f in tmp_path.iterdir() if f.name.startswith('.m.csv')] == []  # no temporary file left

def test_csv_append_other_columns_refused_before_training(tmp_path):
    p = tmp_path/'m.csv'
    p.write_text('epoch,train_loss,valid_loss,accuracy,time\n1,1.0,1.0,0.5,0.1\n')
    learn,_ = _learn(tmp_path, CSVLoggerCB(p, append=True))
    w0 = learn.model[0].weight.clone()
    with pytest.raises(ValueError, match="has the columns"): learn.fit(1)
    assert torch.equal(learn.model[0].weight, w0)  # refused at before_fit: nothing trained
    assert p.read_text().startswith('epoch,train_loss,valid_loss,accuracy')

def test_csv_needs_metrics_and_a_file(tmp_path):
    with pytest.raises(ValueError, match='MetricsCB'): fit(model(), big_batches(), CSVLoggerCB(tmp_path/'m.csv'))
    with pytest.raises(ValueError, match='folder'): CSVLoggerCB(tmp_path)

# --- TensorBoardCB ---
def scalars(d, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    ea = EventAccumulator(str(d)); ea.Reload()
    return [(e.step, e.value) for e in ea.Scalars(tag)]

def f32(v): return float(torch.tensor(v, dtype=torch.float32))

def test_tensorboard_scalars_per_group(tmp_path):
    pytest.importorskip('tensorboard')
    def opt_func(ps, lr):
        ps = list(ps)
        return optim.AdamW([{'params': ps[:2], 'lr': lr}, {'params': ps[2:], 'lr': lr/10, 'betas': (0.8, 0.99)}], lr=lr)
    class Losses(Callback):
        order = 5
        def before_fit(self, learn): self.l = []
        def after_step(self, learn): self.l.append(f32(learn.loss.item()))
    met,ls = quiet_metrics(),Losses()
    fit(model(), big_batches(6, 1.), met, ls, TensorBoardCB(tmp_path), epochs=2, valid=True, opt_func=opt_func, lr=0.01)
    assert scalars(tmp_path, 'train/loss') == list(zip(range(1, 13), ls.l))
    assert [v for _,v in scalars(tmp_path, 'lr/group0')] == [f32(0.01)]*12
    assert [v for _,v in scalars(tmp_path, 'lr/group1')] == [f32(0.001)]*12
    assert [v for _,v in scalars(tmp_path, 'mom/group0')] == [f32(0.9)]*12
    assert [v for _,v in scalars(tmp_path, 'mom/group1')] == [f32(0.8)]*12
    assert scalars(tmp_path, 'epoch/valid_loss') == [(6, f32(met.history[0]['valid_loss'])), (12, f32(met.history[1]['valid_loss']))]

# the checkpoint at update 12 before epoch 2's validation (its row is logged again), or after it (the row was saved)
@pytest.mark.parametrize('ck', [dict(ck_every=4), dict(ck_every=None, ck_epochs=1)])
def test_tensorboard_resume_purges_steps_after_checkpoint(tmp_path, ck):
    pytest.importorskip('tensorboard')
    (tmp_path/'a').mkdir(); (tmp_path/'b').mkdir()
    learn,met = _learn(tmp_path/'a', TensorBoardCB(tmp_path/'a'/'tb')); learn.fit(3)
    _interrupted_then_resumed(tmp_path/'b', lambda: [TensorBoardCB(tmp_path/'b'/'tb')], **ck)
    got,ref = scalars(tmp_path/'b'/'tb', 'train/loss'),scalars(tmp_path/'a'/'tb', 'train/loss')
    assert [s for s,_ in got] == list(range(1, 19))  # each step once, though updates 13-14 were logged twice
    assert got == ref
    assert scalars(tmp_path/'b'/'tb', 'epoch/valid_loss') == scalars(tmp_path/'a'/'tb', 'epoch/valid_loss')

def test_tensorboard_bad_log_dir(tmp_path):
    pytest.importorskip('tensorboard')
    (tmp_path/'f').write_text('x')
    with pytest.raises(ValueError, match='is a file'): TensorBoardCB(tmp_path/'f')
    with pytest.raises(TypeError, match='log_dir'): TensorBoardCB(3)

def test_tensorboard_not_run_by_lr_find(tmp_path):
    pytest.importorskip('tensorboard')
    learn = Learner(model(), DLs(big_batches(6, 1.), big_batches(2, 1.)), F.mse_loss, cbs=[TrainCB(), TensorBoardCB(tmp_path/'tb')], thread_guard=False)
    learn.lr_find(max_epochs=1, plot=False)
    assert not (tmp_path/'tb').exists()

def _py(code:str):
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT, timeout=120)

def test_tensorboard_missing_names_the_extra():
    r = _py("import sys; sys.modules['tensorboard'] = None\n"
            "from miniai.callbacks import TensorBoardCB, GradClipCB\n"
            "GradClipCB(1.)  # the module imports without tensorboard\n"
            "try: TensorBoardCB('runs')\n"
            "except ImportError as e: print('ERR', e)\n")
    assert r.returncode == 0, r.stderr
    assert 'ERR' in r.stdout and 'pip install miniai[tensorboard]' in r.stdout

def test_logger_has_no_handlers_on_import():
    r = _py("import logging, miniai.callbacks, miniai.learner\n"
            "lg = logging.getLogger('miniai')\n"
            "print([type(h).__name__ for h in lg.handlers], logging.getLogger().handlers, lg.level)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["['NullHandler']", '[]', '0']
    assert logger is logging.getLogger('miniai')

def test_ema_warns_through_logger_without_valid(caplog):
    with caplog.at_level('WARNING', logger='miniai'):
        fit(model(), big_batches(), EMACB(validate_ema=True))
    assert any('validate_ema' in r.message and r.name == 'miniai' for r in caplog.records)

# --- under accelerate with 2 processes (gloo on CPU): only the main process writes; clip and EMA agree ---
_JOB = r'''
import json, os, sys, torch, torch.nn.functional as F
from pathlib import Path
from torch import nn
from miniai.datasets import MemoryDL, DataLoaders
from miniai.learner import Learner, TrainCB, MetricsCB
from miniai.accel import AccelerateCB
from miniai.callbacks import GradClipCB, EMACB, CSVLoggerCB, TensorBoardCB
torch.set_num_threads(1)
d = Path(sys.argv[1])
g = torch.Generator().manual_seed(0)
x = torch.randint(0, 256, (256, 4, 4), dtype=torch.uint8, generator=g); y = (x.float().mean((1, 2)) > 127).long()
torch.manual_seed(0)
m = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2))
acc,rank = AccelerateCB(cpu=True),int(os.environ['RANK'])  # set by torchrun: each rank names its own files
clip,ema,met = GradClipCB(0.1),EMACB(0.8),MetricsCB()
learn = Learner(m, DataLoaders(MemoryDL(x, y, 32), MemoryDL(x[:64], y[:64], 32)), F.cross_entropy, lr=0.5, thread_guard=False,
                cbs=[TrainCB(), acc, clip, ema, met, CSVLoggerCB(d/f'm{rank}.csv'), TensorBoardCB(d/f'tb{rank}')])
learn.fit(1)
(d/f'r{rank}.json').write_text(json.dumps(dict(norms=clip.norms, ema=[v.sum().item() for v in ema.ema.values()])))
'''

@slow
def test_two_processes_only_main_writes(tmp_path):
    pytest.importorskip('accelerate'); pytest.importorskip('tensorboard')
    (tmp_path/'job.py').write_text(_JOB)
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(ROOT), 'HF_HUB_OFFLINE': '1'}
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
                        str(tmp_path/'job.py'), str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    r0,r1 = (json.loads((tmp_path/f'r{i}.json').read_text()) for i in (0, 1))
    assert len(r0['norms']) == 4 and r0['norms'] == r1['norms']  # the global norm of the all-reduced gradients
    assert r0['ema'] == r1['ema']
    assert (tmp_path/'m0.csv').exists() and not (tmp_path/'m1.csv').exists()
    assert list((tmp_path/'tb0').iterdir()) and not (tmp_path/'tb1').exists()
