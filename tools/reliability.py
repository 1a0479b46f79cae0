"""Try generated bad and edge inputs across miniai's public API and classify what each one does.

    .venv/bin/python tools/reliability.py            # the whole table (about 1-2 minutes on 2 cores)
    .venv/bin/python tools/reliability.py --no-cli   # without the ~30 `miniai` subprocesses

Each case is one call with one argument replaced by a generated value (everything else valid), from a fixed list
of values, so the table is the same on every run. Outcomes:

- clear: a ValueError, TypeError, FileNotFoundError, ... (any exception of the `CLEAR` types, or one of miniai's own
  errors) whose message names the value or the argument (its name, or `repr`/`str` of the value);
  for the CLI, a non-zero exit without a traceback whose message names the option or the value;
- accepted: no error. Where a value is accepted its object is also used (a scheduler steps 3 times, a callback runs
  a one-epoch fit on tiny data, an annealer is evaluated), so a crash deferred to first use counts as "other";
- other: anything else: another exception type, a message that names neither the value nor the argument, a
  traceback, a hang (over `TIMEOUT` seconds). These are listed after the table, to be fixed.

Accepted cases whose value is plainly wrong (nan, inf, a string, a bool, None where a number is wanted) are listed too:
not all are bugs (`T_max=None` is filled by a callback; a bool is an int to Python), but they are worth a look.
"""
import argparse, contextlib, gzip, io, inspect, math, os, random, re, signal, struct, subprocess, sys, tempfile, time, warnings
from collections import defaultdict
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault('MPLBACKEND', 'Agg'); os.environ.setdefault('HF_HUB_OFFLINE', '1')

import numpy as np
import torch
from torch import nn, optim
import torch.nn.functional as F

from miniai import sched as msched, schedfamily as sf, learner as ml, checkpoint as mck, precision as mprec, datasets as mds

TIMEOUT = 5  # seconds for one in-process case (a tiny fit takes milliseconds)
CLEAR = (ValueError, TypeError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, KeyError,
         IndexError, mds.FashionMNISTError, mck.NonFiniteLossError)

class _Timeout(BaseException): pass
def _alarm(signum, frame): raise _Timeout()

def _names(e:BaseException, arg:str, v)->bool:
    "Does the message of `e` name the argument or the value?"
    msg = str(e)
    keys = [arg] if arg else []
    try: keys += [repr(v), str(v)]
    except Exception: pass
    return any(k and k in msg for k in keys if isinstance(k, str) and len(k) < 200)

def _short(v, n=40)->str:
    try: s = repr(v)
    except Exception: s = f'<{type(v).__name__}>'
    s = s.replace('\n', ' ').replace('|', '\\|')
    return s if len(s) <= n else s[:n-3] + '...'

def run_case(fn, arg:str, v)->tuple:
    "Runs `fn()`; returns (outcome, detail)."
    signal.signal(signal.SIGALRM, _alarm); signal.setitimer(signal.ITIMER_REAL, TIMEOUT)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter('ignore')
            fn()
        return 'accepted', ''
    except _Timeout: return 'other', f'still running after {TIMEOUT} s (a huge value taken as it is?)'
    except CLEAR as e:
        if _names(e, arg, v): return 'clear', f'{type(e).__name__}'
        return 'other', f'{type(e).__name__} not naming {arg or "the value"}: {str(e)[:150]}'
    except Exception as e: return 'other', f'{type(e).__name__}: {str(e)[:150]}'
    finally: signal.setitimer(signal.ITIMER_REAL, 0)

# ------------------------------------------------------------------------------------------------ generated values
def numbers()->list:
    "Numbers and near-numbers: ints, floats, nan, inf, negative, zero, huge, tiny, numpy scalars, 0-d tensors, bools, ..."
    rng = random.Random(0)
    rnd = [round(10**rng.uniform(-6, 6) * rng.choice((1, -1)), 6) for _ in range(3)]
    return [0, 1, -1, 3, 10**18, 2**63, 0.0, -0.0, 0.5, -0.5, 1.5, 1e-300, 1e308, *rnd,
            float('nan'), float('inf'), float('-inf'), True, False,
            np.float64(0.5), np.int64(3), np.float32('nan'), torch.tensor(0.5), torch.tensor(3), torch.tensor([0.1, 0.2]),
            '1', 'abc', '', None, [0.1], (0.1, 0.2, 0.3), complex(1, 1), object()]

_NODEFAULT = inspect.Parameter.empty

def default_of(f, arg):
    "The default of argument `arg` of `f` (a class: its `__init__`), or `inspect.Parameter.empty`."
    try: p = inspect.signature(f).parameters.get(arg)
    except (TypeError, ValueError): return _NODEFAULT
    return _NODEFAULT if p is None else p.default

def suspicious(v, default=_NODEFAULT)->bool:
    """Is `v` plainly wrong for an argument whose default is `default`: nan/inf, a bool for a non-bool (or the reverse),
    a string, None or a container for a number?"""
    if isinstance(default, bool): return not isinstance(v, bool)
    if isinstance(v, bool): return True
    if isinstance(v, (float, np.floating)) and not math.isfinite(v): return True
    if isinstance(v, torch.Tensor) and v.is_floating_point() and not torch.isfinite(v).all(): return True
    numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
    return numeric and (v is None or isinstance(v, (str, complex, list, tuple)) or type(v) is object)

def _opt(n_groups=1):
    ps = [nn.Parameter(torch.zeros(2)) for _ in range(n_groups)]
    return optim.AdamW([{'params': [p]} for p in ps], lr=1e-3)

def _use_sched(s):
    for _ in range(3):
        if hasattr(s, 'step'): s.step()
        else: s.step_update(1)

# ------------------------------------------------------------------------------------------------ areas
def sched_cases():
    "Each scheduler, each argument (from its signature), each generated number; then 3 steps when accepted."
    base = {msched.OneCycle: dict(T_max=100, max_lr=1e-2), msched.CosineAnnealing: dict(T_max=100),
            sf.LinearSched: dict(T_max=100), sf.CosineSched: dict(T_max=100), sf.PolySched: dict(T_max=100),
            sf.RexSched: dict(T_max=100), sf.WSDSched: dict(T_max=100), sf.CosineRestartsSched: dict(T_max=100, n_cycles=2),
            sf.ChebyshevSched: dict(T_max=100), sf.ParamSched: dict(T_max=100, f=sf.SchedLin(1e-3, 1e-4)),
            sf.CosineLrScheduler: dict(total_num_epochs=3, num_update_steps_per_epoch=10)}
    for cls,kw in base.items():
        for arg in [a for a in inspect.signature(cls).parameters if a not in ('optimizer', 'self', 'kwargs', 'f')]:
            for v in numbers():
                def fn(cls=cls, kw=kw, arg=arg, v=v): _use_sched(cls(_opt(), **{**kw, arg: v}))
                yield f'{cls.__name__}({arg}=)', arg, v, fn, default_of(cls, arg)
    for arg in ('max_lr', 'min_lr', 'max_value', 'min_value'):
        for v in numbers():
            def fn(arg=arg, v=v):
                s = sf.ProportionScheduler(_opt(), **{**dict(max_lr=1e-2), arg: v}); s.step()
            yield f'ProportionScheduler({arg}=)', arg, v, fn, 0.
    for cls,args in ((sf.SchedLin, ('start', 'end')), (sf.SchedCos, ('start', 'end')), (sf.SchedExp, ('start', 'end')),
                     (sf.SchedPoly, ('start', 'end', 'power'))):
        for arg in args:
            for v in numbers():
                def fn(cls=cls, args=args, arg=arg, v=v):
                    kw = {**dict(start=1e-2, end=1e-4, power=2.)}; kw = {a: kw[a] for a in args}; kw[arg] = v
                    f = cls(**kw); [f(p) for p in (0., 0.5, 1.)]
                yield f'{cls.__name__}({arg}=)', arg, v, fn, 0.

class _DLs:
    def __init__(self, train, valid): self.train,self.valid = train,valid

def _tiny_dls():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 2, generator=g); y = x.sum(1, keepdim=True)
    b = [(x[i:i+8], y[i:i+8]) for i in (0, 8)]
    return _DLs(b, b[:1])

def _fit(cbs=(), lr=1e-2, n_epochs=1, loss_func=F.mse_loss, opt_func=optim.SGD, dls=None, metrics=True, **fit_kw):
    torch.manual_seed(0)
    cbs = list(cbs)
    if metrics and not any(isinstance(c, ml.MetricsCB) for c in cbs):
        m = ml.MetricsCB(quiet=True); cbs = [m, *cbs]
    learn = ml.TrainLearner(nn.Linear(2, 1), _tiny_dls() if dls is None else dls, loss_func, lr=lr, cbs=cbs, opt_func=opt_func)
    learn.fit(n_epochs, **fit_kw)
    return learn

def learner_cases():
    "Learner construction and fit: lr, n_epochs, the items of cbs, loss_func, opt_func, dls; fit's lr too."
    for v in numbers():
        yield 'TrainLearner(lr=)', 'lr', v, partial(_fit, lr=v), 0.1
        yield 'fit(n_epochs=)', 'n_epochs', v, partial(_fit, n_epochs=v), 1
        yield 'fit(lr=)', 'lr', v, partial(_fit_lr, v), 0.1
    odd = [None, 1, 'x', object(), ml.MetricsCB, lambda learn: None, nn.Linear(2, 1), [ml.MetricsCB()], float('nan')]
    for v in odd: yield 'TrainLearner(cbs=[item])', 'cbs', v, partial(_fit, cbs=[v], metrics=False)
    for v in odd + [lambda p, t: 'loss', lambda p, t: torch.ones(3), lambda p, t: torch.tensor(float('nan'), requires_grad=True)]:
        yield 'TrainLearner(loss_func=)', 'loss_func', v, partial(_fit, loss_func=v)
    for v in odd + [optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.), partial(optim.SGD, momentum=-1.), 'SGD']:
        yield 'TrainLearner(opt_func=)', 'opt_func', v, partial(_fit, opt_func=v)
    x = torch.randn(8, 2)
    for v in [None, 1, 'ab', [], ([], []), {}, (0,), [(x, x[:, :1])], _DLs(None, None), _DLs([(x,)], []),
              _DLs([(x, torch.randn(8, 3))], []), _DLs([x], [x]), _DLs([(x, x[:, :1])] * 2, 'abc')]:
        yield 'TrainLearner(dls=)', 'dls', v, partial(_fit, dls=v)

def _fit_lr(v):
    m = ml.MetricsCB(quiet=True)
    learn = ml.TrainLearner(nn.Linear(2, 1), _tiny_dls(), F.mse_loss, lr=1e-2, cbs=[m])
    learn.fit(1, lr=v)

def callback_cases(tmp:Path):
    "Each callback's constructor arguments, generated; an accepted callback then runs a one-epoch fit."
    paths = [tmp/'ck.pt', str(tmp/'ck2.pt'), tmp, tmp/'nowhere'/'deep'/'x.pt', 123, None, '', b'bytes.pt', tmp/'f.txt'/'x.pt']
    (tmp/'f.txt').write_text('a file')
    strs = ['valid_loss', 'train_loss', 'accuracy', 'nope', '', None, 1, 'min', 'max', 'auto', 'MIN']
    spec = {
        ml.GradAccumCB: dict(n=numbers()),
        mprec.MixedPrecisionCB: dict(dtype=['bf16', 'fp16', 'fp32', 'int8', torch.bfloat16, torch.float32, None, 1, ''],
                                     device_type=['cpu', 'cuda', 'tpu', None, 1, '']),
        mck.CheckpointCB: dict(path=paths, every_epochs=numbers(), every_updates=numbers(), on_interrupt=[True, 0, 'no', None],
                               verbose=[False, 0, 'no', None]),
        mck.EarlyStoppingCB: dict(monitor=strs, patience=numbers(), min_delta=numbers(), mode=strs),
        mck.SaveBestCB: dict(monitor=strs, path=paths, mode=strs, min_delta=numbers(), load_best=[True, 0, 'no', None]),
        ml.MetricsCB: dict(train_metrics=[True, 0, 'no', None]),
    }
    base = {ml.GradAccumCB: dict(n=2), mprec.MixedPrecisionCB: dict(dtype='bf16'),
            mck.CheckpointCB: dict(path=tmp/'ck.pt', verbose=False), mck.SaveBestCB: dict(path=tmp/'best.pt')}
    for cls,args in spec.items():
        for arg,vals in args.items():
            for v in vals:
                def fn(cls=cls, arg=arg, v=v):
                    cb = cls(**{**base.get(cls, {}), arg: v})
                    if cls is ml.MetricsCB: cb.listeners.clear()
                    _fit(cbs=[cb], n_epochs=2)
                yield f'{cls.__name__}({arg}=)', arg, v, fn, default_of(cls, arg)
    from torcheval.metrics import Mean
    for v in [1, 'acc', None, Mean, nn.Linear(1, 1), lambda p, t: 0.]:
        def fn(v=v):
            cb = ml.MetricsCB(m=v, quiet=True); _fit(cbs=[cb])
        yield 'MetricsCB(**metrics)', 'm', v, fn

def _idx(magic, dims, n_data=None, fill=0):
    n = math.prod(dims) if n_data is None else n_data
    return struct.pack('>I', magic) + struct.pack(f'>{len(dims)}I', *dims) + bytes([fill]) * n

def data_cases(tmp:Path):
    "read_idx on generated malformed files (and odd paths); each file written under `tmp`."
    rng = random.Random(0)
    files = {'empty': b'', '1 byte': b'\x00', '3 bytes': b'\x00\x00\x08', 'bad magic': b'\x00\x00\x09\x03' + bytes(20),
             'magic only (images)': struct.pack('>I', 0x803), 'header cut': struct.pack('>I', 0x803) + struct.pack('>I', 2),
             'data short': _idx(0x803, (2, 3, 3), 10), 'data long': _idx(0x803, (2, 3, 3), 30),
             'huge dims': _idx(0x803, (2**32-1, 2**32-1, 2**32-1), 16), 'zero images': _idx(0x803, (0, 28, 28)),
             'labels ok': _idx(0x801, (5,)), 'images ok': _idx(0x803, (2, 3, 3)), 'labels 2-d magic': _idx(0x801, (2, 2)),
             'text': b'hello world, not an IDX file\n', 'utf-8 bom': b'\xef\xbb\xbf' + _idx(0x801, (3,))}
    for i in range(6): files[f'random {i}'] = bytes(rng.randrange(256) for _ in range(rng.choice((4, 9, 17, 100))))
    for name,raw in list(files.items()):
        files[name + ' (gz)'] = gzip.compress(raw, mtime=0)
    files['truncated gz'] = gzip.compress(_idx(0x803, (4, 28, 28)), mtime=0)[:60]
    files['gz junk'] = b'\x1f\x8b' + bytes(40)
    for i,(name,raw) in enumerate(files.items()):
        p = tmp/f'f{i}{".gz" if name.endswith("gz") or name.startswith("gz") else ""}'
        p.write_bytes(raw)
        yield f'read_idx({name})', str(p), p, partial(mds.read_idx, p)
    for name,v in (('missing', tmp/'missing-idx'), ('folder', tmp), ('None', None), ('int', 123), ('bytes path', str(tmp/'f0').encode()),
                   ('empty str', '')):
        yield f'read_idx({name})', 'path', v, partial(mds.read_idx, v)
    bad = tmp/'badset'; bad.mkdir()
    for imgs,labels in mds.FILES.values():
        (bad/imgs).write_bytes(_idx(0x803, (2, 28, 28), 5)); (bad/labels).write_bytes(_idx(0x801, (2,)))
    yield 'get_dls(path=malformed folder)', str(bad), bad, partial(mds.get_dls, path=bad)
    yield 'get_dls(path=missing)', 'path', tmp/'no-data', partial(mds.get_dls, path=tmp/'no-data')

def cli_cases(tmp:Path):
    "About 30 `miniai` subprocesses with bad options. `--data nowhere`: an accepted option ends at the missing data."
    nd = ['--data', str(tmp/'nowhere')]
    f = tmp/'afile'; f.write_text('x')
    junk = tmp/'junk.pt'; junk.write_bytes(b'not a checkpoint')
    cases = [(['fit', opt, v, *nd], opt, v) for opt,v in [
        ('--epochs', 'nan'), ('--epochs', '1e3'), ('--epochs', '١'), ('--epochs', ' 2'), ('--epochs', '99999999999999999999'),
        ('--lr', 'nan'), ('--lr', 'inf'), ('--lr', '1e309'), ('--lr', '-0'), ('--lr', '0x10'), ('--lr', '1_0'),
        ('--bs', '0'), ('--bs', '2.5'), ('--bs', ''), ('--seed', '-1'), ('--seed', '1e3'), ('--seed', '99999999999999999999'),
        ('--n-train', '-5'), ('--n-valid', '0'), ('--accum', '0'), ('--accum', 'two'), ('--precision', 'fp8'),
        ('--sched', 'OneCycle'), ('--pct-start', '0'), ('--pct-start', 'nan'), ('--out', str(f)), ('--out', str(f/'x')),
        ('--out', '')]]
    cases += [(['fit', '--epochs'], '--epochs', ''), (['fit', '--resume', str(tmp/'no.pt'), '--epochs', '1', '--n-train', '256',
               '--n-valid', '64', '--quiet', '--out', str(tmp/'o1')], '--resume', str(tmp/'no.pt')),
              (['fit', '--resume', str(junk), '--epochs', '1', '--n-train', '256', '--n-valid', '64', '--quiet', '--out', str(tmp/'o2')],
               '--resume', str(junk)), (['fit', '--data', str(f), '--out', str(tmp/'o3')], '--data', str(f))]
    exe = str(Path(sys.executable).with_name('miniai'))
    for args,opt,v in cases:
        def fn(args=args, opt=opt, v=v):
            r = subprocess.run([exe, *args], capture_output=True, text=True, timeout=300, cwd=tmp)
            return r
        yield f'miniai {" ".join(a if len(a) < 25 else "..." + a[-20:] for a in args if a not in nd)}', opt, v, fn

def classify_cli(r, opt, v, tmp)->tuple:
    err = r.stderr
    if 'Traceback' in err: return 'other', 'traceback: ' + err.strip().splitlines()[-1][:150]
    if r.returncode == 0: return 'accepted', ''
    if str(tmp/'nowhere') in err and opt != '--data': return 'accepted', 'stopped at the missing data'
    if opt in err or (v and v in err): return 'clear', f'exit {r.returncode}'
    return 'other', f'exit {r.returncode}, message naming neither {opt} nor {v!r}: {err.strip()[:150]}'

# ------------------------------------------------------------------------------------------------ main
def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--no-cli', action='store_true', help='skip the `miniai` subprocesses')
    a = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    rows, others, odd = {}, [], []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d); old = os.getcwd(); os.chdir(d)  # callbacks write their default files here
        try:
            areas = [('schedulers (miniai.sched, miniai.schedfamily)', sched_cases()), ('Learner and fit (miniai.learner)', learner_cases()),
                     ('callbacks (constructors, then a fit)', callback_cases(Path(tempfile.mkdtemp(dir=d)))),
                     ('data (read_idx, get_dls)', data_cases(Path(tempfile.mkdtemp(dir=d))))]
            for area,cases in areas:
                cnt = defaultdict(int); t = time.perf_counter()
                for name,arg,v,fn,*dflt in cases:
                    out,detail = run_case(fn, arg, v)
                    cnt[out] += 1
                    if out == 'other': others.append((area, name, _short(v), detail))
                    elif out == 'accepted' and dflt and suspicious(v, dflt[0]):
                        odd.append((area, name, _short(v)))
                rows[area] = (cnt, time.perf_counter() - t)
            if not a.no_cli:
                ct = Path(tempfile.mkdtemp(dir=d)); cnt = defaultdict(int); t = time.perf_counter()
                for name,opt,v,fn in cli_cases(ct):
                    try: out,detail = classify_cli(fn(), opt, v, ct)
                    except subprocess.TimeoutExpired: out,detail = 'other', 'hang'
                    cnt[out] += 1
                    if out == 'other': others.append(('CLI', name, _short(v), detail))
                    elif out == 'accepted': odd.append(('CLI', name, detail or 'exit 0'))
                rows['CLI (`miniai` subprocesses)'] = (cnt, time.perf_counter() - t)
        finally: os.chdir(old)
    print(f"miniai reliability: generated bad/edge inputs (fixed values, same table every run); torch {torch.__version__}\n")
    print('| area | cases tried | clear error | accepted | other | seconds |')
    print('|---|---:|---:|---:|---:|---:|')
    tot = defaultdict(int)
    for area,(cnt,s) in rows.items():
        n = sum(cnt.values())
        for k in ('clear', 'accepted', 'other'): tot[k] += cnt[k]
        print(f"| {area} | {n} | {cnt['clear']} | {cnt['accepted']} | {cnt['other']} | {s:.1f} |")
    print(f"| **all** | {sum(tot.values())} | {tot['clear']} | {tot['accepted']} | {tot['other']} | {time.perf_counter() - t0:.1f} |")
    print(f"\n### 'other' ({len(others)}): crashes, messages not naming the value, hangs — to fix\n")
    for area,name,v,detail in others: print(f"- {name} {v}: {detail}")
    print(f"\n### accepted, with a value that looks wrong ({len(odd)}): worth a look, not all bugs\n")
    for x in odd: print(f"- {x[1]} {x[2]}")

if __name__ == '__main__': main()
