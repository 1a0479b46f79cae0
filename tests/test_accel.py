"Tests of miniai.accel: ShardedDL's split, AccelerateCB on one process against a plain fit, the settings it refuses, per-rank RNG, a real 2-process run on CPU (gloo) and tools/gpu_check.sh --cpu."
import json, os, re, signal, subprocess, sys
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn, optim
from torcheval.metrics import MulticlassAccuracy

from miniai.accel import AccelerateCB, AccelerateScaler, ShardedDL
from miniai.datasets import DataLoaders, MemoryDL
from miniai.learner import TrainLearner, MetricsCB, GradAccumCB, scaler_step, no_scaler, load_checkpoint
from miniai.sched import BatchSchedCB, OneCycle, RecorderCB, rec_lr
from conftest import real_data, slow

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))  # for tools.accel_fit

def _mem(n=1000, bs=64, shuffle=True, drop_last=False):
    g = torch.Generator().manual_seed(1)
    return MemoryDL(torch.randint(0, 256, (n, 4, 4), dtype=torch.uint8, generator=g), torch.arange(n), bs,
                    shuffle=shuffle, drop_last=drop_last)

@pytest.mark.parametrize('n,bs,N', [(1000, 64, 2), (1024, 64, 2), (1001, 50, 3), (129, 64, 2), (130, 64, 3)])
def test_sharded_train_split(n, bs, N):
    "Each rank a disjoint part of every global batch; all ranks the same number of batches; the union is the epoch."
    dl,seen,lens = _mem(n, bs),[],[]
    for r in range(N):
        torch.manual_seed(0)  # every rank's RNG in the same state, as after set_seed in each process
        s = ShardedDL(dl, N, r)
        rows = [s.idx.clone() for _ in s]
        lens.append((len(s), len(rows)))
        seen.append(torch.cat(rows).tolist())
    assert all(a == lens[0][0] and b == a for a,b in lens)
    assert lens[0][0] == -(-n//(bs*N)) - (0 < n % (bs*N) < N)
    union = set().union(*map(set, seen))
    assert sum(map(len, seen)) == len(union)  # disjoint
    rem = n % (bs*N)
    assert len(union) == (n - rem if 0 < rem < N else n)  # only a last batch smaller than N is dropped

def test_sharded_train_matches_memorydl_order():
    "One process: the same batches as the MemoryDL itself (same RNG draw)."
    dl = _mem(300, 64)
    torch.manual_seed(3); a = [y for _,y in dl]
    torch.manual_seed(3); b = [y for _,y in ShardedDL(dl, 1, 0)]
    assert len(a) == len(b) and all(torch.equal(x, y) for x,y in zip(a, b))
    x0,_ = next(iter(MemoryDL(dl.x, dl.y, 64))); x1,_ = next(iter(ShardedDL(MemoryDL(dl.x, dl.y, 64), 1, 0)))
    assert torch.equal(x0, x1)

@pytest.mark.parametrize('n,bs,N', [(1000, 64, 2), (101, 10, 3), (5, 4, 2), (2, 4, 3)])
def test_sharded_valid_pads_and_gathers(n, bs, N):
    "Validation: equal part sizes; gathered in rank order and cut to n_real, each global batch is the data in order, once."
    dl = _mem(n, bs, shuffle=False)
    its = [iter(ShardedDL(dl, N, r, pad=True)) for r in range(N)]
    got = []
    for parts in zip(*its):
        assert len({len(p[1]) for p in parts}) == 1
        got.append(torch.cat([p[1] for p in parts]))
    sizes = [min(bs*N, n - i*bs*N) for i in range(len(got))]
    assert torch.equal(torch.cat([g[:m] for g,m in zip(got, sizes)]), torch.arange(n))

def _problem(seed=0):
    torch.manual_seed(seed)
    x = torch.randint(0, 256, (600, 8, 8), dtype=torch.uint8); y = (x.float().mean((1, 2)) > 127.5).long()
    return DataLoaders(MemoryDL(x[:480], y[:480], 32, shuffle=True), MemoryDL(x[480:], y[480:], 50))

def _fit(cbs, accum=1, epochs=2):
    dls = _problem()
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))
    m,rec = MetricsCB(accuracy=MulticlassAccuracy()),RecorderCB(lr=rec_lr)
    m.listeners.clear()
    cbs = [m, rec, BatchSchedCB(partial(OneCycle, pct_start=0.3))] + cbs + ([GradAccumCB(accum)] if accum > 1 else [])
    learn = TrainLearner(model, dls, F.cross_entropy, lr=0.05, cbs=cbs, opt_func=partial(optim.AdamW, eps=1e-5),
                         thread_guard=False)  # ThreadGuardCB changing threads midway (busy shared cores) changes float sums
    learn.fit(epochs)
    return learn, m.history, rec.recs['lr']

@pytest.mark.parametrize('accum', [1, 3])
def test_one_process_matches_plain_fit(accum):
    "AccelerateCB on one process: the same weights, metrics and lrs as the plain fit; everything put back afterwards."
    l0,h0,lr0 = _fit([], accum)
    cb = AccelerateCB(cpu=True)
    l1,h1,lr1 = _fit([cb], accum)
    assert cb.accelerator.num_processes == 1
    assert lr0 == lr1 and len(lr1) == l1.n_updates == 2*-(-15//accum)
    for a,b in zip(h0, h1): assert {k: v for k,v in a.items() if k != 'time'} == {k: v for k,v in b.items() if k != 'time'}
    for (k,a),b in zip(l0.model.state_dict().items(), l1.model.state_dict().values()): assert torch.equal(a, b), k
    assert type(l1.model) is nn.Sequential and type(l1.opt) is optim.AdamW and isinstance(l1.dls.train, MemoryDL)
    assert not l1.scaler.is_enabled() and cb._patched == [] and cb.no_sync_batches == 0

def test_scaler_reports_skipped_steps():
    "A step accelerate skipped (fp16 overflow) makes scaler_step return True: the learner counts no update."
    class Opt:
        step_was_skipped = False
        def step(self): pass
    sc,opt = AccelerateScaler(accelerator=None),Opt()
    assert scaler_step(sc, opt) is False
    opt.step_was_skipped = True
    assert scaler_step(sc, opt) is True and sc.skips == 1
    opt.step_was_skipped = False
    assert scaler_step(sc, opt) is False

def test_refuses_another_scaler():
    "MixedPrecisionCB('fp16') (its own GradScaler) with AccelerateCB: a clear error, the learner put back."
    class Swap:
        order = 5
        def before_fit(self, learn): learn.scaler = no_scaler()
    with pytest.raises(TypeError, match="mixed_precision='fp16'"): _fit([AccelerateCB(cpu=True), Swap()], epochs=1)

# --- a real 2-process run on CPU (gloo) ---

def _run(cmd, env, timeout=180)->subprocess.CompletedProcess:
    "Run `cmd` in its own process group; on a timeout kill that group (our processes only) and fail."
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)
    try: out,_ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL); p.communicate()
        pytest.fail(f"{' '.join(cmd)} did not finish in {timeout} s")
    try: os.killpg(p.pid, 0); left = True  # anything still in the job's process group?
    except ProcessLookupError: left = False
    if left: os.killpg(p.pid, signal.SIGKILL)
    assert not left, "processes of the 2-process job were left running"
    return subprocess.CompletedProcess(cmd, p.returncode, out, None)

BS,N_TRAIN,N_VALID,EPOCHS = 128,2048,1000,2

@pytest.fixture(scope='module')
def two_procs(tmp_path_factory):
    d = tmp_path_factory.mktemp('accel')
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(ROOT), 'HF_HUB_OFFLINE': '1'}
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', 'tools/accel_fit.py',
           '--bs', str(BS), '--n-train', str(N_TRAIN), '--n-valid', str(N_VALID), '--epochs', str(EPOCHS),
           '--accum', '2', '--record', str(d)]
    res = _run(cmd, env)
    assert res.returncode == 0, res.stdout[-3000:]
    return d, res.stdout, [json.loads((d/f'rank{r}.json').read_text()) for r in (0, 1)]

@slow
@real_data
def test_two_processes_each_see_half(two_procs):
    d,out,(r0,r1) = two_procs
    assert (r0['rank'], r1['rank'], r0['world'], r1['world']) == (0, 1, 2, 2)
    for e in range(EPOCHS):
        a,b = set(r0['seen'][e]),set(r1['seen'][e])
        assert len(a) == len(r0['seen'][e]) == N_TRAIN//2 and len(b) == N_TRAIN//2
        assert not a & b and a | b == set(range(N_TRAIN))
    assert r0['seen'][0] != r0['seen'][1]  # shuffled anew each epoch

@slow
@real_data
def test_two_processes_schedule_counts_global_updates(two_procs):
    "The lrs on rank 0 are those of one process with the global batch (2 x bs), GradAccumCB(2) included."
    from tools.accel_fit import fit
    d,out,(r0,r1) = two_procs
    one = fit(epochs=EPOCHS, bs=2*BS, n_train=N_TRAIN, n_valid=N_VALID, accum=2, quiet=True)
    assert one['world'] == 1
    assert len(r0['lrs']) == r0['updates'] == EPOCHS*N_TRAIN//(2*BS*2) == len(one['lrs'])
    assert r0['lrs'] == pytest.approx(one['lrs'], rel=1e-12) and r1['lrs'] == r0['lrs']
    assert r0['no_sync_batches'] == r1['no_sync_batches'] == EPOCHS*N_TRAIN//(2*BS)//2  # every other batch
    w0,w1 = torch.load(d/'model0.pt'),torch.load(d/'model1.pt')
    for k in w0:  # gradients synced on the update batches: the same parameters on both (BN buffers are each rank's)
        if 'running' not in k and 'num_batches' not in k: assert torch.equal(w0[k], w1[k]), k

@slow
@real_data
def test_two_processes_metrics_are_whole_valid_set(two_procs):
    "The printed validation metrics are one process's evaluation of rank 0's final weights on the whole validation set."
    from miniai.datasets import get_dls
    from miniai.init import GeneralRelu, get_model
    d,out,(r0,r1) = two_procs
    rows = [l.split() for l in out.splitlines() if re.match(r'^\s+\d+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+\d+:', l)]
    assert len(rows) == EPOCHS  # printed once (by the main process only)
    assert 'processes 2;' in out and out.count('processes 2;') == 1
    model = get_model(partial(GeneralRelu, leak=0.1, sub=0.4), norm=nn.BatchNorm2d)
    model.load_state_dict(torch.load(d/'model0.pt'))
    m = MetricsCB(accuracy=MulticlassAccuracy(), quiet=True)
    learn = TrainLearner(model, get_dls(bs=300, n_train=10, n_valid=N_VALID), F.cross_entropy, cbs=[m])
    learn.fit(1, train=False)
    got,want = m.history[-1],r0['history'][-1]
    assert got['accuracy'] == pytest.approx(want['accuracy'], abs=1e-6)
    assert got['valid_loss'] == pytest.approx(want['valid_loss'], rel=1e-5)
    assert r1['history'] == [{**h, 'time': r1['history'][i]['time']} for i,h in enumerate(r0['history'])]
    assert float(rows[-1][2]) == pytest.approx(want['valid_loss'], abs=6e-5)
    assert float(rows[-1][3]) == pytest.approx(want['accuracy'], abs=6e-5)

@slow
@real_data
def test_two_processes_stop_and_resume_exactly(two_procs, tmp_path):
    "A 2-process fit stopped mid-epoch and resumed (2 processes) ends with the uninterrupted run's lrs and weights."
    d,out,(r0,r1) = two_procs
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(ROOT), 'HF_HUB_OFFLINE': '1'}
    base = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', 'tools/accel_fit.py',
            '--bs', str(BS), '--n-train', str(N_TRAIN), '--n-valid', str(N_VALID), '--epochs', str(EPOCHS), '--accum', '2',
            '--quiet', '--ckpt', str(tmp_path/'ck.pt')]
    res = _run(base + ['--stop-after', '5', '--record', str(tmp_path/'stop')], env)
    assert res.returncode == 0, res.stdout[-3000:]
    st = load_checkpoint(tmp_path/'ck.pt')
    assert st['pos']['n_updates'] == 5 and st['fit']['procs'] == 2 and st['pos']['epoch'] == 1  # mid-epoch 1
    assert len(st['rng']['ranks']) == 2 and not torch.equal(st['rng']['ranks'][0]['now']['torch'], st['rng']['ranks'][1]['now']['torch'])
    res = _run(base + ['--resume', str(tmp_path/'ck.pt'), '--record', str(tmp_path/'rec')], env)
    assert res.returncode == 0, res.stdout[-3000:]
    got = json.loads((tmp_path/'rec'/'rank0.json').read_text())
    assert got['lrs'] == r0['lrs'] and got['updates'] == r0['updates']
    assert [{k:v for k,v in h.items() if k != 'time'} for h in got['history']] == \
           [{k:v for k,v in h.items() if k != 'time'} for h in r0['history']]
    w,want = torch.load(tmp_path/'rec'/'model0.pt'),torch.load(d/'model0.pt')
    for k in want: assert torch.equal(w[k], want[k]), k
    # per-rank random draws (a callback's torch.rand at each training batch): the ranks differ; the stopped run drew
    # what the uninterrupted one drew (reproducible seeds), and after the resume each rank goes on with its own stream
    stop = [json.loads((tmp_path/'stop'/f'rank{r}.json').read_text())['draws'] for r in (0, 1)]
    res1 = [got['draws'], json.loads((tmp_path/'rec'/'rank1.json').read_text())['draws']]
    for r,full in enumerate((r0['draws'], r1['draws'])):
        assert len(stop[r]) + len(res1[r]) == len(full) == EPOCHS*N_TRAIN//(2*BS)
        assert stop[r] + res1[r] == full, r
    assert [v for *_,v in r0['draws']] != [v for *_,v in r1['draws']]
    # the same checkpoint in one process is refused, saying why
    from tools.accel_fit import fit
    with pytest.raises(ValueError, match='procs: 2 in the checkpoint, 1 in this fit'):
        fit(epochs=EPOCHS, bs=BS, n_train=N_TRAIN, n_valid=N_VALID, accum=2, quiet=True, resume=tmp_path/'ck.pt')

# --- settings AccelerateCB refuses at setup_fit (issue 17 §4), before any batch ---

class _CountCB:
    "Counts the batches the fit ran."
    order = 0
    def __init__(self): self.n = 0
    def before_batch(self, learn): self.n += 1

def _refused(acb, cbs=(), opt_func=partial(optim.AdamW, eps=1e-5)):
    "Fit with `acb`; returns the error, after checking that no batch ran and the learner holds its plain model."
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    count = _CountCB()
    learn = TrainLearner(model, _problem(), F.cross_entropy, lr=0.05, cbs=[acb, count, *cbs], opt_func=opt_func)
    with pytest.raises((ValueError, TypeError)) as e: learn.fit(1)
    assert count.n == 0 and learn.model is model and not learn.scaler.is_enabled()
    return str(e.value)

def test_refuses_accelerator_accumulation():
    "Accelerator(gradient_accumulation_steps=k) would divide every loss by k: refused, naming the value and GradAccumCB(k)."
    from accelerate import Accelerator
    msg = _refused(AccelerateCB(Accelerator(cpu=True, gradient_accumulation_steps=3)))
    assert 'gradient_accumulation_steps=3' in msg and 'GradAccumCB(3)' in msg and 'twice' not in msg
    msg = _refused(AccelerateCB(Accelerator(cpu=True, gradient_accumulation_steps=2)), cbs=[GradAccumCB(2)])
    assert 'gradient_accumulation_steps=2' in msg and 'GradAccumCB(2)' in msg and 'divided twice' in msg

def test_refuses_launcher_accumulation(monkeypatch):
    "What `accelerate launch --gradient_accumulation_steps 4` sets (ACCELERATE_GRADIENT_ACCUMULATION_STEPS) is refused too."
    monkeypatch.setenv('ACCELERATE_GRADIENT_ACCUMULATION_STEPS', '4')
    msg = _refused(AccelerateCB(cpu=True))
    assert 'gradient_accumulation_steps=4' in msg and 'ACCELERATE_GRADIENT_ACCUMULATION_STEPS' in msg and 'GradAccumCB(4)' in msg

def test_grad_accum_cb_alone_is_not_divided_twice():
    "GradAccumCB(3) under AccelerateCB (accelerator accumulation 1): the weights of the plain GradAccumCB(3) fit."
    l0,_,_ = _fit([], 3, epochs=1)
    l1,_,_ = _fit([AccelerateCB(cpu=True)], 3, epochs=1)
    for (k,a),b in zip(l0.model.state_dict().items(), l1.model.state_dict().values()): assert torch.equal(a, b), k

class _FakeAcc:
    "Stands for an Accelerator whose state reports `distributed_type` (FSDP and DeepSpeed cannot be built on this CPU)."
    def __init__(self, dt): self.distributed_type,self.gradient_accumulation_steps = dt,1
    def __getattr__(self, name): raise AssertionError(f"AccelerateCB used accelerator.{name} after a refused distributed type")

@pytest.mark.parametrize('dt', ['FSDP', 'DEEPSPEED', 'MEGATRON_LM', 'XLA'])
def test_refuses_sharded_distributed_types(dt):
    "FSDP / DeepSpeed / Megatron-LM (and XLA): refused at setup_fit, naming the type and what is supported; nothing prepared."
    from accelerate.utils import DistributedType
    msg = _refused(AccelerateCB(_FakeAcc(DistributedType[dt])))
    assert f'distributed_type={dt} is not supported' in msg and 'MULTI_CPU' in msg and 'DDP' in msg

def test_check_distributed_type_values():
    "Every accelerate DistributedType: the DDP ones and NO pass, every other is refused by name."
    from accelerate.utils import DistributedType
    from miniai.accel import check_distributed_type
    ok = {'NO', 'MULTI_CPU', 'MULTI_GPU'}
    for t in DistributedType:
        if t.value in ok: assert check_distributed_type(t) is t
        else:
            with pytest.raises(ValueError, match=f'distributed_type={t.value} is not supported'): check_distributed_type(t)

def test_refuses_optimizer_that_is_not_torch():
    "An optimizer that is not a torch.optim.Optimizer (prepare leaves it unwrapped): refused, naming it and the alternative."
    class HomeMadeSGD:
        def __init__(self, params, lr): self.param_groups = [dict(params=list(params), lr=lr)]
        def step(self): pass
        def zero_grad(self): pass
    msg = _refused(AccelerateCB(cpu=True), opt_func=HomeMadeSGD)
    assert 'HomeMadeSGD, not a torch.optim.Optimizer' in msg and 'torch.optim.AdamW' in msg

def test_miniai_adamw_under_accelerate_and_torch_schedulers():
    "miniai.optim.AdamW: prepared by accelerate and driven by torch's schedulers, with torch.optim.AdamW's lrs and weights."
    from miniai.optim import AdamW
    def run(opt_cls, sched):
        dls = _problem(); torch.manual_seed(1)
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 2))
        seen = {}
        class Spy:
            order = 0
            def before_fit(self, learn): seen['opt'] = type(learn.opt).__name__
        rec = RecorderCB(lr=rec_lr)
        learn = TrainLearner(model, dls, F.cross_entropy, lr=0.05, opt_func=partial(opt_cls, eps=1e-5),
                             cbs=[AccelerateCB(cpu=True), Spy(), rec, BatchSchedCB(sched)], thread_guard=False)
        learn.fit(2)
        return rec.recs['lr'], model.state_dict(), seen['opt']
    for sched in (partial(optim.lr_scheduler.StepLR, step_size=7, gamma=0.5), partial(optim.lr_scheduler.OneCycleLR, max_lr=0.05)):
        if sched.func is optim.lr_scheduler.OneCycleLR: sched = partial(sched, total_steps=30)
        l0,w0,o0 = run(optim.AdamW, sched)
        l1,w1,o1 = run(AdamW, sched)
        assert o0 == o1 == 'AcceleratedOptimizer' and len(l1) == 30
        assert l1 == pytest.approx(l0, rel=1e-12) and len(set(l1)) > 1
        for k in w0: torch.testing.assert_close(w1[k], w0[k], rtol=1e-5, atol=1e-6)

def test_rank_seeds_differ_and_repeat():
    "rank_seed: differs by rank and by seed, the same each call; seed_rank seeds torch, random and numpy."
    import random
    import numpy as np
    from miniai.accel import rank_seed, seed_rank
    assert len({rank_seed(s, r) for s in (0, 1, 42) for r in range(4)}) == 12 and rank_seed(42, 1) == rank_seed(42, 1)
    def draw(r):
        seed_rank(42, r)
        return torch.rand(4).tolist(), random.random(), float(np.random.rand())
    a,b,c = draw(0),draw(1),draw(0)
    assert a == c and all(x != y for x,y in zip(a, b))

@slow
@real_data
def test_gpu_check_cpu_mode():
    "tools/gpu_check.sh --cpu: the GPU script's checks (mixed precision + accumulation resume, the CLI, accelerate on 1 and 2 processes: stop + resume exact, ranks' draws differ) on CPU."
    env = {**os.environ, 'PYTHON': sys.executable}
    res = _run(['bash', 'tools/gpu_check.sh', '--cpu'], env, timeout=240)
    assert res.returncode == 0, res.stdout[-3000:]
    assert res.stdout.count('lrs, metrics, weights and draws equal') == 3 and 'ranks drew different' in res.stdout
    assert '24 updates on cpu, weights equal' in res.stdout and 'miniai fit --precision bf16 --accum 2' in res.stdout
    assert res.stdout.rstrip().endswith('gpu_check: all OK')
    bad = _run(['bash', 'tools/gpu_check.sh', '--gpu'], env)
    assert bad.returncode == 2 and 'unknown option --gpu' in bad.stdout
