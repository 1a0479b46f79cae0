"""Issue 17 §1: a checkpoint never runs code, a damaged one is refused, and a wrong one gets one clear error — through
`load_checkpoint`, `learn.fit(resume=...)`, `learn.load` and `miniai fit --resume` (a real subprocess)."""
import os, subprocess, sys
from functools import partial
from pathlib import Path
import numpy as np
import pytest, torch
import torch.nn.functional as F
from torch import nn, optim

from miniai.learner import TrainLearner, MetricsCB, load_checkpoint
from miniai.checkpoint import CheckpointCB
from miniai.sched import BatchSchedCB, OneCycle, RecorderCB
from miniai.safefile import CheckpointError, load_state, save_state, _header_size
from loaders import DLs, ShuffledDL

MINIAI = str(Path(sys.executable).with_name('miniai'))

def make_learn(*cbs):
    torch.manual_seed(0)
    x = torch.randn(320, 8); y = (x[:, 0] > 0).long()
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))
    mcb = MetricsCB(quiet=True)
    return TrainLearner(model, DLs(ShuffledDL(x, y, 32), ShuffledDL(x[:64], y[:64], 32)), F.cross_entropy, lr=0.05,
                        opt_func=optim.AdamW, cbs=[mcb, RecorderCB(), BatchSchedCB(partial(OneCycle, max_lr=0.05)), *cbs])

class Evil:
    "Unpickling this calls os.system: what a malicious .pt does."
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (os.system, (f'touch {self.marker}',))

@pytest.fixture
def ck(tmp_path):
    "A real mid-fit checkpoint: a 2-epoch fit stopped after 5 training batches of its second epoch."
    p = tmp_path/'ck.pt'
    learn = make_learn(CheckpointCB(p, verbose=False))
    class Stop:
        order = 0
        def after_batch(self, learn):
            if learn.training and learn.epoch == 1 and learn.iter == 4: raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt): learn.fit(2, cbs=Stop())
    return p

def _weights(learn): return {k: v.clone() for k,v in learn.model.state_dict().items()}

def test_malicious_pickle_never_runs(tmp_path):
    marker = tmp_path/'pwned'
    evil = tmp_path/'evil.pt'
    torch.save({'format': 'miniai-fit', 'version': 1, 'x': Evil(marker)}, evil)
    with pytest.raises(CheckpointError, match='refused: a pickle'): load_checkpoint(evil)
    learn = make_learn(); w = _weights(learn)
    with pytest.raises(CheckpointError, match='could run code'): learn.fit(2, resume=evil)
    with pytest.raises(CheckpointError, match='refused'): learn.load(evil)
    assert not marker.exists()
    assert all(torch.equal(v, w[k]) for k,v in learn.model.state_dict().items())

def test_cli_resume_of_a_malicious_file_is_one_line(tmp_path):
    marker = tmp_path/'pwned'; evil = tmp_path/'evil.pt'
    torch.save({'x': Evil(marker)}, evil)
    r = subprocess.run([MINIAI, 'fit', '--resume', str(evil), '--out', str(tmp_path/'runs'), '--quiet'],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and 'refused' in r.stderr and str(evil) in r.stderr, r.stderr
    assert 'Traceback' not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not marker.exists()

def test_flipped_bytes_in_tensor_data_refused(ck, tmp_path):
    b = bytearray(ck.read_bytes())
    start = 8 + _header_size(b)  # the tensor data begins after the header
    i = start + (len(b) - start) // 2
    b[i:i + 64] = bytes(x ^ 0xff for x in b[i:i + 64])
    bad = tmp_path/'bad.pt'; bad.write_bytes(b)
    learn = make_learn(); w = _weights(learn)
    with pytest.raises(CheckpointError) as e: learn.fit(2, resume=bad)
    assert str(bad) in str(e.value) and 'corrupted' in str(e.value)
    assert all(torch.equal(v, w[k]) for k,v in learn.model.state_dict().items())  # nothing restored
    r = subprocess.run([MINIAI, 'fit', '--resume', str(bad), '--out', str(tmp_path/'runs'), '--quiet'],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and 'corrupted' in r.stderr and 'Traceback' not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr

def test_truncated_checkpoint_refused(ck, tmp_path):
    cut = tmp_path/'cut.pt'; cut.write_bytes(ck.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match='corrupted'): load_checkpoint(cut)

@pytest.mark.parametrize('change,msg', [
    (lambda st: st.pop('fit'), "missing 'fit'"),
    (lambda st: st['pos'].pop('batch'), "missing pos['batch']"),
    (lambda st: st.update(version=999), 'checkpoint version 999; this miniai reads versions 1, 2'),
    (lambda st: st.update(format='something-else'), 'not a miniai fit checkpoint'),
    (lambda st: st.update(cbs=[1]), "'cbs' is a list"),
])
def test_wrong_checkpoint_one_clear_error(ck, tmp_path, change, msg):
    st = load_checkpoint(ck); change(st)
    p = tmp_path/'odd.pt'; save_state(p, st, 'miniai-fit')
    with pytest.raises(CheckpointError) as e: load_checkpoint(p)
    assert msg in str(e.value) and str(p) in str(e.value), str(e.value)
    with pytest.raises(CheckpointError, match='holds format, version, fit, pos' if 'missing' in msg else '.'):
        make_learn().fit(2, resume=p)

def test_resume_exact_and_old_format_resumes_the_same(ck, tmp_path):
    "The new file resumes exactly; a checkpoint as miniai wrote it before (torch.save, numpy RNG array) still resumes, safely."
    ref = make_learn(); ref.fit(2); want = _weights(ref)
    new = make_learn(); new.fit(2, resume=ck)
    assert all(torch.equal(v, want[k]) for k,v in new.model.state_dict().items())
    st = load_checkpoint(ck)
    for k in ('now', ):
        name,key,*rest = st['rng'][k]['numpy']
        st['rng'][k]['numpy'] = (name, key.numpy().astype(np.uint32), *rest)  # the old form: an ndarray
    st['version'] = 1
    old = tmp_path/'old.pt'; torch.save(st, old)
    assert old.read_bytes()[:2] == b'PK'
    o = make_learn(); o.fit(2, resume=old)
    assert all(torch.equal(v, want[k]) for k,v in o.model.state_dict().items())

def test_learn_save_load_checksummed(tmp_path):
    learn = make_learn(); learn.fit(1)
    p = tmp_path/'m.pt'; learn.save(p, with_opt=True)
    kind,st = load_state(p)
    assert kind == 'miniai-weights' and set(st) == {'model', 'opt'}
    other = make_learn(); other.fit(1, lr=0.001); other.load(p, with_opt=True)
    assert all(torch.equal(v, learn.model.state_dict()[k]) for k,v in other.model.state_dict().items())
    b = bytearray(p.read_bytes()); b[-10] ^= 1; p.write_bytes(b)
    with pytest.raises(CheckpointError, match='corrupted'): other.load(p)

def test_unwritable_state_refused_at_save_naming_where(tmp_path):
    class Odd:
        order = 5
        def state_dict(self): return {'fn': print}
        def load_state_dict(self, sd): pass
    learn = make_learn(CheckpointCB(tmp_path/'ck.pt', verbose=False), Odd())
    with pytest.raises(TypeError, match=r'cbs\.Odd\.fn: a builtins'): learn.fit(1)
    assert not (tmp_path/'ck.pt').exists()

@pytest.mark.parametrize('make', [
    lambda: BatchSchedCB(partial(__import__('miniai.schedfamily', fromlist=['x']).ChebyshevSched)),
    lambda: BatchSchedCB(partial(__import__('miniai.schedfamily', fromlist=['x']).ParamSched, field='lr', f=lambda p: 0.05 * (1 - p))),
    lambda: BatchSchedCB(partial(__import__('miniai.schedfamily', fromlist=['x']).CosineRestartsSched, first_cycle_steps=5)),
])
def test_scheduler_states_with_helper_objects_checkpoint_and_resume(tmp_path, make):
    "A scheduler holding functions or helper objects saves only its plain data (the rest is rebuilt), and resumes exactly."
    def learn_with():
        l = make_learn(); l.cbs[2] = make(); return l
    ref = learn_with(); ref.fit(2); want = _weights(ref)
    p = tmp_path/'ck.pt'
    learn = learn_with(); learn.cbs.append(CheckpointCB(p, verbose=False))
    class Stop:
        order = 0
        def after_batch(self, learn):
            if learn.training and learn.epoch == 1 and learn.iter == 3: raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt): learn.fit(2, cbs=Stop())
    res = learn_with(); res.cbs.append(CheckpointCB(p, verbose=False)); res.fit(2, resume=p)
    assert all(torch.equal(v, want[k]) for k,v in res.model.state_dict().items())
