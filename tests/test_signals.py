"""`miniai fit` under signals and resumes (issue 17 §2-3): real subprocesses, real data (a subset), real files.

SIGTERM and SIGUSR1 are taken like Ctrl-C (the checkpoint after the running batch, the resume line, exit 128 + signal);
`--resume` continues the same run or is refused in one line; `--procs N` forwards signals and its workers die with it.
The matrices of refusals run in this process (`run_here`, test_cli.py says why), each beside a real subprocess case."""
import os, re, signal, subprocess, sys, time
from pathlib import Path
import pytest
from conftest import real_data, slow
from test_cli import MINIAI, run, run_here, one_clear_line, whole_run
from miniai.learner import load_checkpoint
from miniai.safefile import load_state, save_state

pytestmark = [real_data, pytest.mark.skipif(sys.platform != 'linux', reason='POSIX signals, /proc')]
# 16 batches an epoch, about 0.1 s an epoch here (1 s in all): long enough to be stopped inside one
LONG = ('--n-train', '4096', '--n-valid', '256', '--bs', '256', '--quiet', '--threads', '1', '--epochs', '10')

def start_and_signal(out:Path, sig, *args, procs=False):
    "Start `miniai fit --out out *args`, send `sig` once its first checkpoint exists (training is under way); (rc, stderr, ck)."
    p = subprocess.Popen([MINIAI, 'fit', '--out', str(out), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        t = time.time()
        while not list(out.parent.glob(f'{out.name}.run-*/checkpoint.pt')) and p.poll() is None and time.time() - t < 120:
            time.sleep(0.005)
        assert p.poll() is None, p.communicate()[1]
        p.send_signal(sig)
        _,err = p.communicate(timeout=120)
    finally:
        if p.poll() is None: p.kill(); p.communicate()
    return p.returncode, err, list(out.parent.glob(f'{out.name}.run-*/checkpoint.pt'))

def resume_line(err:str)->list:
    line = err.strip().splitlines()[-1].strip()
    assert line.startswith('miniai fit ') and ' --resume ' in line, err
    return line.split()[1:]

def metrics(d:Path)->list:
    "metrics.csv without the seconds column."
    return [l.rsplit(',', 1)[0] for l in (d/'metrics.csv').read_text().splitlines()]

@slow
@pytest.mark.parametrize('sig,rc', [(signal.SIGTERM, 143), (signal.SIGUSR1, 138)])
def test_signal_checkpoints_and_resumes(tmp_path, sig, rc):
    "SIGTERM (Slurm, Kubernetes, `timeout`) and SIGUSR1 (Slurm's --signal) do what Ctrl-C does, with exit 128 + signal."
    out = tmp_path/'latest'
    code,err,cks = start_and_signal(out, sig, *LONG)
    assert code == rc, err
    assert f'{signal.Signals(sig).name}: stopping at the end of this batch' in err, err
    assert f'interrupted ({signal.Signals(sig).name})' in err and 'Traceback' not in err, err
    args = resume_line(err)
    assert len(cks) == 1 and Path(args[-1]) == cks[0], (args, cks)
    st = load_checkpoint(cks[0])
    assert not st['pos']['mid_batch'] and (st['pos']['epoch'], st['pos']['batch']) != (0, 0)  # taken after a whole batch
    assert not os.path.lexists(out)  # not published
    r = run(*args)
    assert r.returncode == 0, r.stderr
    assert whole_run(out) == 10

@slow
def test_signal_resume_is_exact(tmp_path):
    "The resumed run's metrics equal an uninterrupted run's."
    code,err,_ = start_and_signal(tmp_path/'a', signal.SIGTERM, *LONG)
    assert code == 143, err
    assert run(*resume_line(err)).returncode == 0
    assert run('fit', '--out', str(tmp_path/'b'), *LONG).returncode == 0
    assert metrics(tmp_path/'a') == metrics(tmp_path/'b')

@slow
def test_second_signal_stops_at_once(tmp_path):
    "Two SIGTERMs: the fit stops at once (inside the batch); the checkpoint is still written and resumes."
    out = tmp_path/'latest'
    p = subprocess.Popen([MINIAI, 'fit', '--out', str(out), *LONG], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while not list(tmp_path.glob('latest.run-*/checkpoint.pt')) and p.poll() is None: time.sleep(0.005)
        p.send_signal(signal.SIGTERM); p.send_signal(signal.SIGTERM)
        _,err = p.communicate(timeout=120)
    finally:
        if p.poll() is None: p.kill(); p.communicate()
    assert p.returncode == 143, err
    assert run(*resume_line(err)).returncode == 0 and whole_run(out) == 10

# ------------------------------------------------------------------------------------------------ --resume refusals (§2)
SMALL = ('--n-train', '1024', '--n-valid', '256', '--quiet', '--threads', '1')

@pytest.fixture(scope='module')
def ck(tmp_path_factory):
    "A whole 2-epoch run's checkpoint, made with --lr 0.03 (not the preset's)."
    d = tmp_path_factory.mktemp('ck')
    r = run('fit', '--epochs', '2', '--lr', '0.03', *SMALL, '--out', str(d/'o'))
    assert r.returncode == 0, r.stderr
    return (d/'o').resolve()/'checkpoint.pt'

@pytest.mark.parametrize('args,msg', [
    (['--lr', '0.01', '--sched', 'cosine'], '--lr 0.03, not --lr 0.01; --sched onecycle, not --sched cosine'),
    (['--pct-start', '0.5'], '--pct-start 0.25, not --pct-start 0.5'),
    (['--epochs', '3', '--bs', '128'], '--epochs 2, not --epochs 3; --bs 256, not --bs 128'),
    (['--seed', '1'], '--seed 42, not --seed 1'),
    (['--preset', 'conv'], '--preset default, not --preset conv'),
    (['--preset', 'best'], '--preset default, not --preset best'),
    (['--accum', '2'], '--accum 1, not --accum 2'),
    (['--n-train', '2048', '--n-valid', '128'], '--n-train 1024, not --n-train 2048; --n-valid 256, not --n-valid 128'),
    (['--procs', '2'], '--procs 1, not --procs 2'),  # refused before torchrun starts
])
def test_resume_with_other_options_refused(tmp_path, ck, args, msg):
    r = (run if args[0] == '--lr' else run_here)('fit', '--resume', str(ck), '--out', str(tmp_path/'o'), *args)
    one_clear_line(r, f'miniai: error: --resume: the checkpoint was made with {msg}')
    assert not os.listdir(tmp_path)  # before the run folder, the data, the launch

def test_resume_precision_refused(tmp_path, ck):
    "The precision the fit ran with is recorded ('auto' resolved): another one is refused; 'auto' takes the checkpoint's."
    used = load_checkpoint(ck)['cbs']['_CLIOptionsCB']['precision']
    other = 'fp32' if used != 'fp32' else 'bf16'
    one_clear_line(run('fit', '--resume', str(ck), '--precision', other, '--out', str(tmp_path/'o')),
                   f'--precision {used}, not --precision {other}')

def interrupted(tmp_path)->Path:
    "The checkpoint of a run made with `--lr 0.03 --epochs 10` (not the preset's) and stopped by SIGTERM."
    code,err,cks = start_and_signal(tmp_path/'first', signal.SIGTERM, *LONG, '--lr', '0.03')
    assert code == 143 and len(cks) == 1, err
    return cks[0]

@slow
def test_resume_alone_continues_the_same_run(tmp_path):
    "`miniai fit --resume CK` with none of the options: each takes the checkpoint's value (lr, epochs, n-train ...);"
    "--out, --quiet, --threads and --data may differ."
    c = interrupted(tmp_path)
    out = tmp_path/'elsewhere'
    r = run('fit', '--resume', str(c), '--out', str(out), '--threads', '2', '--data', '/usr/share/datasets/fashion-mnist')
    assert r.returncode == 0, r.stderr
    assert whole_run(out) == 10
    opts = load_checkpoint(out/'checkpoint.pt')['cbs']['_CLIOptionsCB']
    assert (opts['lr'], opts['epochs'], opts['n_train'], opts['n_valid'], opts['sched']) == (0.03, 10, 4096, 256, 'onecycle')

def test_resume_of_a_two_process_checkpoint_with_one_refused(tmp_path, ck):
    "A checkpoint recording 2 processes (its spec, as --procs 2 writes it) with --procs 1: refused, both counts named."
    kind,st = load_state(ck)
    st['fit']['procs'] = 2
    save_state(tmp_path/'two.pt', st, kind)
    one_clear_line(run('fit', '--resume', str(tmp_path/'two.pt'), '--procs', '1', '--out', str(tmp_path/'o')),
                   '--procs 2, not --procs 1')

@slow
def test_resume_of_an_older_checkpoint(tmp_path, ck):
    "A checkpoint written before the options were recorded: its spec's epochs (and accum, procs) are compared, the rest is "
    "taken from the command line as before."
    kind,st = load_state(ck)
    del st['cbs']['_CLIOptionsCB']
    save_state(tmp_path/'old.pt', st, kind)
    one_clear_line(run('fit', '--resume', str(tmp_path/'old.pt'), '--epochs', '3', '--out', str(tmp_path/'o')),
                   '--epochs 2, not --epochs 3')
    r = run('fit', '--resume', str(tmp_path/'old.pt'), '--lr', '0.03', *SMALL, '--out', str(tmp_path/'o'))
    assert r.returncode == 0 and 'complete' in r.stderr, r.stderr  # the fit was complete: nothing to train, accepted

@pytest.mark.parametrize('make,msg', [
    (lambda d, ck: d/'missing.pt', 'no such checkpoint file'),
    (lambda d, ck: (d/'junk.pt').write_bytes(b'not a checkpoint at all') and d/'junk.pt', 'not a miniai file'),
    (lambda d, ck: flip(ck, d/'flipped.pt'), 'corrupted'),
])
def test_bad_checkpoint_one_line(tmp_path, ck, make, msg):
    one_clear_line((run if msg == 'corrupted' else run_here)('fit', '--resume', str(make(tmp_path, ck)), '--out', str(tmp_path/'o')), msg)

def flip(src:Path, dst:Path)->Path:
    "A copy of `src` with 64 bytes flipped in the middle (inside tensor data)."
    b = bytearray(src.read_bytes()); i = len(b)//2
    for j in range(i, i + 64): b[j] ^= 0xFF
    dst.write_bytes(bytes(b)); return dst

# ------------------------------------------------------------------------------------------------ --procs N (§3)
PROCS = ('--procs', '2', '--n-train', '2048', '--n-valid', '256', '--bs', '256', '--quiet', '--epochs', '40')

@slow
def test_procs_launcher_forwards_sigterm(tmp_path):
    "SIGTERM to the launcher: forwarded, the workers stop after the same batch, the checkpoint is written, exit 143."
    out = tmp_path/'latest'
    code,err,cks = start_and_signal(out, signal.SIGTERM, *PROCS)
    assert code == 143, err[-3000:]
    assert 'the 2 processes stopped (SIGTERM)' in err and len(cks) == 1 and 'Traceback' not in err, err[-3000:]
    args = resume_line(err)
    assert Path(args[-1]) == cks[0] and '--run-dir' not in args
    st = load_checkpoint(cks[0])
    assert st['fit']['procs'] == 2 and not st['pos']['mid_batch'] and not os.path.lexists(out)

def _descendants(pid:int)->list:
    "Every process below `pid` (from /proc)."
    kids = {}
    for d in os.listdir('/proc'):
        if d.isdigit():
            try: kids.setdefault(int(open(f'/proc/{d}/stat').read().rsplit(')', 1)[1].split()[1]), []).append(int(d))
            except (OSError, ValueError, IndexError): pass
    res,todo = [],[pid]
    while todo:
        for c in kids.get(todo.pop(), []): res.append(c); todo.append(c)
    return res

def _running(pid:int)->bool:
    try: return open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError: return False

@slow
def test_procs_launcher_killed_workers_stop_and_publish_nothing(tmp_path):
    "kill -9 of the launcher: torchrun and the workers are gone within 2 s, and --out is never switched to their run."
    runs = tmp_path/'runs'; out = runs/'latest'
    r = run('fit', '--epochs', '1', *SMALL, '--out', str(out))  # a previous run, which must stay the latest
    assert r.returncode == 0, r.stderr
    prev = os.readlink(out)
    p = subprocess.Popen([MINIAI, 'fit', '--out', str(out), *PROCS], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        t = time.time()
        while not [c for c in runs.glob('latest.run-*/checkpoint.pt') if c.parent.name != prev] and time.time() - t < 120:
            assert p.poll() is None, p.communicate()[1]
            time.sleep(0.01)
        below = _descendants(p.pid)
        assert len(below) >= 3, below  # torchrun and its 2 workers, training
        p.kill(); p.wait()
        t = time.time()
        while any(_running(c) for c in below) and time.time() - t < 10: time.sleep(0.05)
        gone = time.time() - t
        assert not any(_running(c) for c in below), [c for c in below if _running(c)]
        assert gone < 2, gone
    finally:
        if p.poll() is None: p.kill()
        for c in _descendants(p.pid): os.kill(c, signal.SIGKILL)
    time.sleep(1)
    assert os.readlink(out) == prev and whole_run(out) == 1

def test_sigterm_before_the_fit_exits_143(tmp_path):
    "SIGTERM while the fit is still importing and loading (its run folder made, no checkpoint yet): exit 143, one"
    "message, no traceback, and the empty run folder removed."
    out = tmp_path/'latest'
    p = subprocess.Popen([MINIAI, 'fit', '--out', str(out), *LONG], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while not list(tmp_path.glob('latest.run-*')) and p.poll() is None: time.sleep(0.002)
        time.sleep(0.05)
        p.send_signal(signal.SIGTERM)
        _,err = p.communicate(timeout=60)
    finally:
        if p.poll() is None: p.kill(); p.communicate()
    assert p.returncode == 143, err
    assert 'interrupted (SIGTERM)' in err and 'no checkpoint was written yet' in err and 'Traceback' not in err, err
    assert os.listdir(tmp_path) == []
