"""`miniai fit` as users run it: a real subprocess, real data (a subset), real files.

Refusals that come before any training (a count beyond the data, a --resume with other options) are also checked in
this process through `run_here`, a call of `cli.main`: a new process spends about 4 s importing torch to say one line,
and a dozen such cases would cost a minute. Each kind of refusal keeps at least one case run as a real subprocess."""
import csv, errno, io, os, random, re, shutil, signal, subprocess, sys, time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
import pytest
from conftest import real_data, slow
from miniai.learner import load_checkpoint
from miniai.safefile import load_state

MINIAI = str(Path(sys.executable).with_name('miniai'))
SMALL = ('--n-train', '1024', '--n-valid', '256', '--bs', '256', '--quiet')  # a run of a few seconds
OUTPUTS = ('metrics.csv', 'loss.png', 'sched.png', 'model.pt')
TMP_RE = re.compile(r'^\..+\.miniai-[0-9a-f]{8}\.tmp$')  # miniai's temporary names (miniai.core)

def run(*args, exe=(MINIAI,), **kw):
    return subprocess.run([*exe, *args], capture_output=True, text=True, timeout=600, **kw)

def run_here(*args)->subprocess.CompletedProcess:
    """`miniai *args` as `cli.main(args)` in this process, its exit status, stdout and stderr captured as `run`'s are: a
    `SystemExit` carrying a message is printed to stderr with status 1, as the interpreter does."""
    from miniai.cli import main
    out,err = io.StringIO(),io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try: main(list(args)); code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) or e.code is None else (print(e.code, file=sys.stderr) or 1)
    return subprocess.CompletedProcess(['miniai', *args], code or 0, out.getvalue(), err.getvalue())

def one_clear_line(r, *contains, rc=2):
    "The command failed with exit status `rc` and one line on stderr holding `contains`, no traceback, nothing on stdout."
    assert r.returncode == rc, (r.returncode, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1 and 'Traceback' not in r.stderr, r.stderr
    for c in contains: assert c in r.stderr, (c, r.stderr)
    assert r.stdout == ''

# ------------------------------------------------------------------------------------------------ arguments (item 3)
@pytest.mark.parametrize('args,msg', [
    (['fit', '--epochs', '-1'], "--epochs='-1': must be an int > 0"),
    (['fit', '--epochs', '0'], "--epochs='0'"),
    (['fit', '--lr', '0'], "--lr='0'"),
    (['fit', '--lr=-3e-2'], "--lr='-3e-2'"),
    (['fit', '--lr', 'fast'], "--lr='fast'"),
    (['fit', '--pct-start', '1.5'], "--pct-start='1.5'"),
    (['fit', '--sched', 'steps'], "invalid choice: 'steps'"),
    (['fit', '--threads', '0'], "--threads='0': must be auto or an int from 1 to 1024"),
    (['fit', '--threads', 'many'], "--threads='many'"),
    (['fit', '--frobnicate'], 'unrecognized arguments: --frobnicate'),
    (['fit', '--seed', '99999999999999999999'], "--seed='99999999999999999999': must be an int"),  # was a traceback
    # no abbreviations: `--epoch 1` was taken as `--epochs 1`
    (['fit', '--epoch', '1'], 'unrecognized arguments: --epoch 1'),
    (['fit', '--ep=1'], 'unrecognized arguments: --ep=1'),
    # --pct-start means nothing to these schedules: refused, not ignored
    (['fit', '--sched', 'cosine', '--pct-start', '0.3'], '--pct-start=0.3 only applies to --sched onecycle, not --sched cosine'),
    (['fit', '--pct-start', '0.3', '--sched', 'none'], '--pct-start=0.3 only applies to --sched onecycle, not --sched none'),
    (['fit', '--csv', ''], "--csv='': must be a file path"),
    (['fit', '--tensorboard', ''], "--tensorboard='': must be a folder path"),
])
def test_bad_arguments_one_line(args, msg):
    one_clear_line(run(*args), msg)

def test_fit_help_is_a_short_manual():
    "`miniai fit --help`: the options in groups, each with its default, and examples at the end."
    r = run('fit', '--help')
    assert r.returncode == 0 and r.stderr == '', r.stderr
    out = r.stdout
    groups = ['what to train:', 'schedule:', 'precision and speed:', 'output and resume:', 'processes:', 'examples:']
    at = [out.index(g) for g in groups]
    assert at == sorted(at), at
    import miniai.cli as cli
    f = cli.make_parser()._subparsers._group_actions[0].choices['fit']
    for a in f._actions:
        if a.help not in (None, '==SUPPRESS==') and a.dest not in ('help', 'quiet'): assert 'default' in a.help, a.dest
    assert 'miniai fit --resume runs/latest/checkpoint.pt' in out

def test_no_command_prints_usage_and_commands():
    r = run()  # was "error: the following arguments are required: cmd"
    assert r.returncode == 2 and r.stdout == ''
    assert r.stderr.startswith('usage: miniai'), r.stderr
    assert re.search(r'^commands:$', r.stderr, re.M) and re.search(r'^\s+fit\s+train and write', r.stderr, re.M), r.stderr
    assert 'miniai: error: a command is needed' in r.stderr.strip().splitlines()[-1]
    assert 'required: cmd' not in r.stderr

def test_missing_data_is_one_clear_error(tmp_path):
    r = run('fit', '--epochs', '1', '--data', str(tmp_path/'nowhere'), '--out', str(tmp_path/'o'))
    assert r.returncode != 0
    assert 'Traceback' not in r.stderr and 'nowhere' in r.stderr
    assert not os.path.lexists(tmp_path/'o') and not list(tmp_path.glob('o.run-*'))  # the empty run folder is gone

# ------------------------------------------------------------------------------------------------ an unusable --out (item 1)
# `--data nowhere`: the --out error comes first, so it is found before the data is loaded (and before any training).
def test_out_is_a_file(tmp_path):
    f = tmp_path/'f'; f.write_text('mine')
    one_clear_line(run('fit', '--data', 'nowhere', '--out', str(f)), f'--out {f}: is a file, not a folder')
    assert f.read_text() == 'mine' and sorted(os.listdir(tmp_path)) == ['f']

def test_out_under_a_file(tmp_path):
    f = tmp_path/'f'; f.write_text('mine')
    one_clear_line(run('fit', '--data', 'nowhere', '--out', str(f/'runs'/'latest')), f'--out {f}/runs/latest: {f} is a file, not a folder')
    assert f.read_text() == 'mine' and sorted(os.listdir(tmp_path)) == ['f']

def test_out_is_a_user_folder_refused_untouched(tmp_path):
    d = tmp_path/'thesis'; d.mkdir(); (d/'ch1.tex').write_text('keep')
    one_clear_line(run('fit', '--data', 'nowhere', '--out', str(d)), f'--out {d}: is a folder holding files that are not miniai', 'ch1.tex')
    assert (d/'ch1.tex').read_text() == 'keep' and not d.is_symlink() and sorted(os.listdir(tmp_path)) == ['thesis']

@slow
@real_data
def test_out_older_miniai_folder_moved_into_a_run_folder(tmp_path):
    old = tmp_path/'latest'; old.mkdir()
    for n in OUTPUTS: (old/n).write_bytes(b'old ' + n.encode())
    r = run('fit', '--epochs', '1', *SMALL, '--out', str(old))
    assert r.returncode == 0, r.stderr
    aside = [p for p in tmp_path.iterdir() if p.name.endswith('-old')]
    assert len(aside) == 1 and all((aside[0]/n).read_bytes() == b'old ' + n.encode() for n in OUTPUTS)  # nothing lost
    assert old.is_symlink() and whole_run(old) == 1

def _private_mounts_ok()->bool:
    "Can this test make a private mount namespace with a tmpfs (root, or a user namespace)? Tests run as root, where"
    "chmod does not stop writes: a read-only or full tmpfs is a real read-only or full disk."
    if not shutil.which('unshare'): return False
    r = subprocess.run(['unshare', '-m', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs -o size=16k tmpfs /mnt'],
                       capture_output=True)
    return r.returncode == 0
private_mounts = pytest.mark.skipif(not _private_mounts_ok(), reason='needs `unshare -m` and tmpfs mounts')

def in_tmpfs(mnt:Path, opts:str, prep:str, *args, env=None):
    "Run `miniai *args` with a tmpfs mounted (with `opts`) on `mnt`, in a private mount namespace, after shell `prep`."
    mnt.mkdir(exist_ok=True)
    q = ' '.join(f"'{a}'" for a in (MINIAI, *args))
    return subprocess.run(['unshare', '-m', '--propagation', 'private', 'sh', '-c',
                           f"mount -t tmpfs -o {opts} tmpfs '{mnt}' && {prep} exec {q}"],
                          capture_output=True, text=True, timeout=600, env=env)

@private_mounts
@pytest.mark.parametrize('kind,opts,prep,problem', [
    ('read-only', 'ro,size=1m', '', 'Read-only file system'),
    ('full', 'size=16k', "mkdir {m}/runs; dd if=/dev/zero of={m}/fill bs=4k count=64 2>/dev/null;", 'No space left on device'),
])
def test_out_read_only_or_full(tmp_path, kind, opts, prep, problem):
    m = tmp_path/'disk'
    out = m/'runs'/'latest' if kind == 'full' else m/'latest'
    r = in_tmpfs(m, opts, prep.format(m=m), 'fit', '--data', 'nowhere', '--out', str(out))
    one_clear_line(r, f'--out {out}: ', problem)

@real_data
@private_mounts
def test_checkpoint_write_fails_mid_fit_results_rescued(tmp_path):
    "A real disk that fills up during the fit: 256 KiB pass the probe, the first checkpoint (~650 KiB) does not fit."
    m,rescue_base = tmp_path/'disk',tmp_path/'tmp'; rescue_base.mkdir()
    r = in_tmpfs(m, 'size=256k', '', 'fit', '--epochs', '2', *SMALL, '--out', str(m/'latest'),
                 env={**os.environ, 'TMPDIR': str(rescue_base)})
    assert r.returncode == 1 and 'Traceback' not in r.stderr, r.stderr
    assert 'No space left on device' in r.stderr and 'checkpoint' in r.stderr, r.stderr
    saved = Path(re.search(r'saved to (\S+?)/? \(model\.pt, metrics\.csv\)', r.stderr).group(1))
    assert saved.parent == rescue_base
    assert weights(saved/'model.pt')
    assert len(list(csv.DictReader(open(saved/'metrics.csv')))) == 1  # the first epoch's row

@real_data
def test_final_write_fails_results_rescued(tmp_path, monkeypatch, capsys):
    "In-process (the only way to fail exactly the last writes): `atomic_write` of model.pt raises ENOSPC as a full disk does."
    import tempfile, torch
    import miniai.cli as cli
    out = tmp_path/'runs'/'latest'
    prev = cli.prepare_out(out)
    for n in OUTPUTS: (prev/n).write_bytes(b'previous')
    cli.publish_run(prev, out)
    import miniai.presets as presets  # fit_fashion_mnist writes the results (moved out of miniai.cli, issue 18 step 6)
    real = presets.atomic_write
    def full_disk(path, write):
        if Path(path).name == 'model.pt': raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, write)
    monkeypatch.setattr(presets, 'atomic_write', full_disk)
    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path/'tmp')); (tmp_path/'tmp').mkdir()
    threads = torch.get_num_threads()  # main sets the count for the process it owns (--threads auto: the free cores)
    try:
        with pytest.raises(SystemExit) as e: cli.main(['fit', '--epochs', '1', *SMALL, '--out', str(out)])
    finally: torch.set_num_threads(threads)
    msg = str(e.value.code)
    assert msg.startswith('miniai: error: writing the results') and 'No space left on device' in msg and 'model.pt' in msg, msg
    saved = Path(re.search(r'saved to (\S+?)/? \(model\.pt, metrics\.csv\)', msg).group(1))
    assert saved.parent == tmp_path/'tmp'
    sd = weights(saved/'model.pt')
    assert len(sd) > 10 and all(torch.isfinite(v.float()).all() for v in sd.values())
    assert len(list(csv.DictReader(open(saved/'metrics.csv')))) == 1
    assert os.readlink(out) == prev.name and (out/'model.pt').read_bytes() == b'previous'  # --out not switched

# ------------------------------------------------------------------------------------------------ runs
def weights(path:Path)->dict:
    "The model's state dict in a model.pt: a `learn.save` file (checksummed safetensors), which runs no code when loaded."
    kind,st = load_state(path)
    assert kind == 'miniai-weights', (path, kind)
    return st['model']

def whole_run(d:Path)->int:
    "Checks `d` holds one whole run (the four outputs complete, and the checkpoint, nothing else); returns its epochs."
    assert sorted(os.listdir(d)) == sorted([*OUTPUTS, 'checkpoint.pt']), os.listdir(d)
    rows = list(csv.DictReader(open(d/'metrics.csv')))
    assert rows and [r['epoch'] for r in rows] == [str(i+1) for i in range(len(rows))]
    for png in ('loss.png', 'sched.png'):
        b = (d/png).read_bytes()
        assert b[:8] == b'\x89PNG\r\n\x1a\n' and b[-8:] == b'IEND\xaeB`\x82', png  # whole: from signature to end chunk
    weights(d/'model.pt'); load_checkpoint(d/'checkpoint.pt')  # whole: the checksums cover every byte
    return len(rows)

@real_data
@pytest.mark.parametrize('exe', [(MINIAI,), (sys.executable, '-m', 'miniai')])
def test_fit_end_to_end_on_a_subset(tmp_path, exe):
    out = tmp_path/'run'
    r = run('fit', '--epochs', '2', '--n-train', '4096', '--n-valid', '1024', '--bs', '256', '--out', str(out), exe=exe)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(out/'metrics.csv')))
    assert [x['epoch'] for x in rows] == ['1', '2']
    assert list(rows[0]) == ['epoch', 'train_loss', 'valid_loss', 'valid_accuracy', 'seconds']
    acc = float(rows[-1]['valid_accuracy'])
    assert 0.5 < acc <= 1.0  # 2 epochs on 4k images: far above chance (0.1)
    for f in ('loss.png', 'sched.png', 'model.pt'):
        assert (out/f).stat().st_size > 1000, f
    assert (out/'loss.png').read_bytes()[:4] == b'\x89PNG'
    table = [l for l in r.stdout.splitlines() if l.strip()]
    assert table[0].split()[:3] == ['epoch', 'train_loss', 'valid_loss']
    assert [l.split()[0] for l in table[1:3]] == ['1', '2'] == [x['epoch'] for x in rows]  # one numbering: from 1
    assert out.is_symlink() and re.fullmatch(r'run\.run-\d{8}-\d{6}-\d+', os.readlink(out))  # a link to its run folder

@slow
@real_data
def test_sched_none_and_cosine(tmp_path):
    for s in ('none', 'cosine'):
        r = run('fit', '--epochs', '1', '--n-train', '2048', '--n-valid', '512', '--sched', s, '--out', str(tmp_path/s), '--quiet')
        assert r.returncode == 0, r.stderr
        assert (tmp_path/s/'metrics.csv').exists()

@slow
@real_data
@pytest.mark.skipif(os.name != 'posix', reason='SIGINT to a subprocess is POSIX')
@pytest.mark.parametrize('preset', ['default', 'best'])
def test_ctrl_c_resume_line_names_a_real_checkpoint(tmp_path, preset):
    """A real Ctrl-C: the printed resume line names the run folder's checkpoint, which exists, and running it completes
    the run; for the default conv net and for `--preset best` (the ResNet with augmentation)."""
    out = tmp_path/'runs'/'latest'
    args = ['fit', '--preset', preset, '--epochs', '3', '--n-train', '2048', '--n-valid', '256', '--bs', '256', '--quiet', '--out', str(out)]
    p = subprocess.Popen([MINIAI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        t = time.time()
        while not list(out.parent.glob('latest.run-*/checkpoint.pt')) and p.poll() is None and time.time() - t < 120: time.sleep(0.01)
        p.send_signal(signal.SIGINT)
        _,err = p.communicate(timeout=120)
    finally:
        if p.poll() is None: p.kill(); p.communicate()
    assert p.returncode == 130, err
    line = err.strip().splitlines()[-1].strip()
    assert line.startswith('miniai fit ') and ' --resume ' in line, err
    ck = Path(line.split(' --resume ')[-1])
    assert ck.is_file() and ck.parent.name.startswith('latest.run-') and ck.parent.parent == out.parent, err
    assert not os.path.lexists(out)  # an interrupted run does not become the latest
    r = run(*line.split()[1:])
    assert r.returncode == 0, r.stderr
    assert whole_run(out) == 3 and out.resolve() != ck.parent.resolve()  # the resumed run is a run of its own

@slow
@real_data
@pytest.mark.skipif(os.name != 'posix', reason='SIGKILL and symlinks')
def test_kill_9_around_the_final_writes_latest_stays_whole(tmp_path):
    """`miniai fit` killed with SIGKILL at random moments from its last checkpoint to its exit (the final writes and the
    switch of the link): `--out` is always the previous whole run or the new whole run. Then a later run removes
    miniai's stale temporary files (aged by hand: the cleaning age is 10 minutes) and keeps fresh ones."""
    runs = tmp_path/'runs'; out = runs/'latest'
    r = run('fit', '--epochs', '2', *SMALL, '--out', str(out))  # the previous run: 2 epochs, told apart by its rows
    assert r.returncode == 0, r.stderr
    epochs = {os.readlink(out): 2}
    def start():
        "A 1-epoch run; returns the process, its run folder and the time its checkpoint appeared (its final writes follow)."
        known = set(os.listdir(runs))
        p = subprocess.Popen([MINIAI, 'fit', '--epochs', '1', *SMALL, '--out', str(out)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        t0 = time.time()
        while time.time() - t0 < 120:
            new = [n for n in os.listdir(runs) if n not in known and n.startswith('latest.run-')]
            if new and (runs/new[0]/'checkpoint.pt').exists(): return p, new[0], time.perf_counter()
            if p.poll() is not None: break
            time.sleep(0.005)
        p.kill(); raise AssertionError(p.communicate()[1])
    p,name,t = start()  # a reference run: how long from its checkpoint to the switch of the link (the final writes)
    while os.readlink(out) != name and p.poll() is None: time.sleep(0.002)
    span = time.perf_counter() - t
    assert p.wait() == 0 and os.readlink(out) == name
    epochs[name] = 1
    rng,before,after = random.Random(8),0,0
    n = 10
    for i in range(n):
        prev = os.readlink(out)
        p,name,t = start()
        time.sleep(max(0., t + span*1.5*(i + rng.random())/n - time.perf_counter()))  # spread over [0, 1.5 span]
        p.send_signal(signal.SIGKILL); p.wait()
        dt = time.perf_counter() - t
        now = os.readlink(out)
        assert now in (prev, name), (prev, name, now)
        if now == name: epochs[name] = 1; after += 1
        else: before += 1; span = max(span, dt)  # a loaded machine: the final writes take longer than measured
        assert whole_run(out) == epochs[now]  # never a mix: all files complete, the right run's rows
    print(f'kills: {before} before the switch of the link, {after} after it (span {span:.2f} s)')
    assert before >= 1
    # stale temporary files: some left by the kills, planted ones too (a file, and a temporary link beside --out)
    killed = [d for d in runs.iterdir() if d.is_dir() and not d.is_symlink() and d.name not in epochs]
    planted = [(killed or [runs/name])[0]/'.model.pt.miniai-0badc0de.tmp', runs/'.latest.miniai-0badbeef.tmp']
    planted[0].write_bytes(b'half'); os.symlink(name, planted[1])
    old = time.time() - 3600
    stale = [p for p in runs.rglob('.*') if TMP_RE.match(p.name)]
    for s in stale: os.utime(s, (old, old), follow_symlinks=False)
    fresh = runs/name/'.metrics.csv.miniai-00c0ffee.tmp'; fresh.write_bytes(b'being written')  # by another run, now
    r = run('fit', '--epochs', '1', *SMALL, '--out', str(out))
    assert r.returncode == 0, r.stderr
    assert whole_run(out) == 1
    left = [p for p in runs.rglob('.*') if TMP_RE.match(p.name)]
    assert left == [fresh], (left, stale)


@real_data
def test_threads_fixed_and_auto(tmp_path):
    "--threads N runs on N threads; auto picks at least one and at most the cores (and the run completes)."
    import os
    from miniai.cli import fit_fashion_mnist
    import torch
    old = torch.get_num_threads()
    try:
        r = fit_fashion_mnist(epochs=1, bs=256, n_train=1024, n_valid=256, out=tmp_path/'a'/'latest', quiet=True, threads=1)
        assert r['threads'] == 1
        r = fit_fashion_mnist(epochs=1, bs=256, n_train=1024, n_valid=256, out=tmp_path/'b'/'latest', quiet=True)
        assert 1 <= r['threads'] <= (os.cpu_count() or 1)
    finally: torch.set_num_threads(old)

@slow
@real_data
def test_procs_2_trains_on_two_processes(tmp_path):
    "miniai fit --procs 2: two workers (torch.distributed.run, gloo), one table, one run folder, a 2-process checkpoint."
    import torch
    out = tmp_path/'runs'/'latest'
    r = run('fit', '--procs', '2', '--epochs', '2', '--n-train', '2048', '--n-valid', '512', '--bs', '256', '--out', str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [l for l in r.stdout.splitlines() if l.split()[:1] in (['1'], ['2'])]
    assert len(rows) == 2 and r.stdout.count('valid accuracy') == 1  # printed by the main process only
    assert sorted(p.name for p in out.iterdir()) == ['checkpoint.pt', 'loss.png', 'metrics.csv', 'model.pt', 'sched.png']
    st = load_checkpoint(out/'checkpoint.pt')
    assert st['fit']['procs'] == 2 and st['fit']['n_batches'] == 2048 // 256  # global batches of 256: 128 per process
    assert len(list(csv.DictReader(open(out/'metrics.csv')))) == 2
    r = run('fit', '--procs', '3', '--bs', '256', '--out', str(tmp_path/'x'))
    assert r.returncode == 2 and '--bs=256 with --procs=3' in r.stderr

@slow
@real_data
def test_accelerate_launch_form(tmp_path):
    "`accelerate launch --multi_gpu --num_processes 2 -m miniai fit ...` (CPU): the workers share one run folder."
    import os, torch
    out = tmp_path/'latest'
    acc = str(Path(sys.executable).with_name('accelerate'))
    r = subprocess.run([acc, 'launch', '--multi_gpu', '--num_processes', '2', '-m', 'miniai', 'fit', '--epochs', '1',
                        '--n-train', '1024', '--n-valid', '256', '--bs', '256', '--out', str(out)],
                       capture_output=True, text=True, timeout=300, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count('valid accuracy') == 1 and len(list(tmp_path.glob('latest.run-*'))) == 1
    assert load_checkpoint(out/'checkpoint.pt')['fit']['procs'] == 2


# ------------------------------------------------------------------------------------------------ --preset best (issue 11)

@slow
@real_data
def test_preset_best_trains_the_resnet_with_tta_and_resumes(tmp_path):
    """`--preset best`: the ResNet (its weights in model.pt), the flip-TTA accuracy in the last row of metrics.csv and on
    the last line; its checkpoint is refused with the default preset or other epochs."""
    import torch
    from miniai.resnet import resnet
    out = tmp_path/'best'
    args = ['fit', '--preset', 'best', '--epochs', '2', '--n-train', '1024', '--n-valid', '256', '--out', str(out)]
    r = run(*args)
    assert r.returncode == 0, r.stderr
    assert re.search(r'valid accuracy 0\.\d{4}, 0\.\d{4} with flip TTA;', r.stdout.strip().splitlines()[-1]), r.stdout
    rows = list(csv.DictReader(open(out/'metrics.csv')))
    assert [r_['valid_accuracy_tta'] for r_ in rows][0] == '' and 0 < float(rows[-1]['valid_accuracy_tta']) <= 1
    sd = weights(out/'model.pt')
    assert sd.keys() == resnet().state_dict().keys()
    ck = out.resolve()/'checkpoint.pt'
    r = run('fit', '--preset', 'default', '--epochs', '2', '--n-train', '1024', '--n-valid', '256', '--bs', '256', '--out', str(tmp_path/'d'), '--resume', str(ck))
    one_clear_line(r, '--resume: the checkpoint was made with --preset best, not --preset default')
    r = run(*args, '--epochs', '3', '--resume', str(ck))  # a finished 2-epoch fit is not a 3-epoch one
    one_clear_line(r, '--resume: the checkpoint was made with --epochs 2, not --epochs 3')

@slow
@real_data
def test_default_trains_fast_net_and_preset_conv_the_course_conv_net(tmp_path):
    """The default preset's model.pt holds fast_net's weights (34_fastnet), --preset conv's the course's conv net's;
    a checkpoint of one is refused when resumed as the other, before anything is loaded (the preset is recorded in it)."""
    import torch
    from miniai.fastnet import fast_net
    from miniai.init import conv_net
    outs = {}
    for preset,factory in (('default', fast_net), ('conv', conv_net)):
        outs[preset] = out = tmp_path/preset
        r = run('fit', '--preset', preset, '--epochs', '1', *SMALL, '--out', str(out))
        assert r.returncode == 0, r.stderr
        sd = weights(out/'model.pt')
        assert sd.keys() == factory().state_dict().keys()
        assert all(sd[k].shape == v.shape for k,v in factory().state_dict().items())
    r = run('fit', '--preset', 'conv', '--epochs', '1', *SMALL, '--out', str(tmp_path/'x'), '--resume', str(outs['default'].resolve()/'checkpoint.pt'))
    one_clear_line(r, '--resume: the checkpoint was made with --preset default, not --preset conv')

# ------------------------------------------------------------------------------------------------ startup cost (issue 11)
@real_data
def test_fit_imports_no_compiler_nor_hub_libraries(tmp_path):
    """The default job never imports what it does not use: torch._dynamo (about 1 s; every torch.optim optimizer
    imports it, miniai fit uses miniai's AdamW), nor HF datasets, pandas or accelerate (the data comes from the IDX files)."""
    prog = ("import sys; from miniai.cli import main; main(['fit', '--epochs', '1', '--out', sys.argv[1], " +
            ', '.join(repr(a) for a in SMALL) + "]); "
            "print(sorted(m for m in ('torch._dynamo', 'datasets', 'pandas', 'accelerate') if m in sys.modules))")
    r = run('-c', prog, str(tmp_path/'o'), exe=(sys.executable,))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == '[]', r.stdout
    assert (tmp_path/'o'/'metrics.csv').exists()

_REFAULTS = ("import resource\nf0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
             "for _ in range(10): blocks = [b'x' * (4 << 20) for _ in range(8)]; del blocks\n"
             "print('faults', resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)")

@real_data
@pytest.mark.skipif(not sys.platform.startswith('linux'), reason="glibc's malloc: Linux")
def test_fit_keeps_freed_memory(tmp_path):
    """The process that trains keeps the memory its steps free (`keep_freed_memory`, 04_threads): after `miniai fit`,
    ten rounds of 32 MiB allocated, written and freed fault on the first round's pages only, where Python's own
    malloc settings fault on all of them again every round (checked beside it, in a process that trained nothing)."""
    prog = ("import sys; from miniai.cli import main; main(['fit', '--epochs', '1', '--out', sys.argv[1], " +
            ', '.join(repr(a) for a in SMALL) + "])\n" + _REFAULTS)
    r = run('-c', prog, str(tmp_path/'o'), exe=(sys.executable,))
    assert r.returncode == 0, r.stderr
    after_fit = int(r.stdout.split('faults')[-1])
    plain = int(run('-c', _REFAULTS, exe=(sys.executable,)).stdout.split('faults')[-1])
    pages = 32 << 20 >> 12  # one round's pages
    assert plain > 9 * pages, plain
    assert after_fit < 2 * pages, (after_fit, plain)

@pytest.mark.parametrize('argv', [['fit', '--epochs', '-1'], ['fit', '--help'], ['fit', '--pct-start', '0.3', '--sched', 'none']])
def test_arguments_are_answered_before_torch_or_matplotlib_loads(argv):
    "A bad argument or --help costs a tenth of a second: miniai.cli reaches them importing neither torch nor matplotlib."
    prog = (f"import sys; from miniai.cli import main\ntry: main({argv!r})\nexcept SystemExit: pass\n"
            "print(sorted(m for m in ('torch', 'matplotlib', 'numpy') if m in sys.modules))")
    r = run('-c', prog, exe=(sys.executable,))
    assert r.stdout.strip().splitlines()[-1] == '[]', r.stdout + r.stderr

# ------------------------------------------------------------------------------------------------ values (issue 17 §5)
@real_data
def test_last_training_batch_of_one_is_dropped(tmp_path):
    "--n-train 513 at --bs 256: the last training batch would be 1 image (BatchNorm fails in training); it is dropped."
    r = run('fit', '--epochs', '1', '--n-train', '513', '--n-valid', '300', '--quiet', '--out', str(tmp_path/'o'))
    assert r.returncode == 0, r.stderr
    st = load_checkpoint(tmp_path/'o'/'checkpoint.pt')
    assert st['fit']['n_batches'] == 2 and st['pos']['n_updates'] == 2  # 2 batches of 256; the 513th image unused
    assert whole_run(tmp_path/'o') == 1

@real_data
@pytest.mark.parametrize('opt,n,split,how', [('--n-train', 10**9, '60,000', run), ('--n-valid', 10001, '10,000', run_here)])
def test_counts_beyond_the_data_refused(tmp_path, opt, n, split, how):
    r = how('fit', opt, str(n), '--out', str(tmp_path/'o'))
    one_clear_line(r, f'{opt}={n}: the data has 60,000 training and 10,000 test images; give at most {split}')
    assert not os.listdir(tmp_path)  # before the run folder is made

# ------------------------------------------------------------------------------------------------ --csv, --tensorboard (issue 19)
EPOCH_COLS = ['epoch', 'train_loss', 'valid_loss', 'accuracy', 'time']  # MetricsCB's table, as CSVLoggerCB writes it

def events(d)->dict:
    "The scalars of the TensorBoard event files in `d`: {tag: [(step, value), ...]}, as TensorBoard reads them."
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    ea = EventAccumulator(str(d)); ea.Reload()
    return {t: [(e.step, e.value) for e in ea.Scalars(t)] for t in ea.Tags()['scalars']}

def check_logs(tb, f, epochs, per_epoch, first=1):
    "The event files: each tag, one loss per update from `first`, the epochs' rows; the CSV: one row per epoch, the table's columns."
    ev,n = events(tb),epochs*per_epoch
    assert set(ev) == {'train/loss', 'lr/group0', 'mom/group0', *(f'epoch/{c}' for c in EPOCH_COLS[1:])}, set(ev)
    assert [s for s,_ in ev['train/loss']] == list(range(first, n + 1))
    assert [s for s,_ in ev['lr/group0']] == list(range(first, n + 1))
    rows = list(csv.DictReader(open(f)))
    assert list(rows[0]) == EPOCH_COLS and [r['epoch'] for r in rows] == [str(i + 1) for i in range(epochs)]
    vl = [(s, v) for s,v in ev['epoch/valid_loss']]
    assert [s for s,_ in vl] == [per_epoch*(i + 1) for i in range(epochs)][-len(vl):]  # one per epoch logged, at its last update
    for (_,v),r in zip(vl[::-1], rows[::-1]): assert v == pytest.approx(float(r['valid_loss']), rel=1e-6)
    return rows

@slow
@real_data
def test_tensorboard_and_csv(tmp_path):
    out,tb,f = tmp_path/'o',tmp_path/'tb',tmp_path/'logs'/'m.csv'
    r = run('fit', '--epochs', '2', *SMALL, '--out', str(out), '--tensorboard', str(tb), '--csv', str(f))
    assert r.returncode == 0, r.stderr
    rows = check_logs(tb, f, 2, 4)  # 1024 images at --bs 256: 4 updates an epoch
    for a,b in zip(rows, csv.DictReader(open(out/'metrics.csv'))):  # the run's own table, 6 decimals
        assert (float(a['valid_loss']), float(a['accuracy'])) == pytest.approx((float(b['valid_loss']), float(b['valid_accuracy'])), abs=1e-6)

def _stopped_after_an_epoch(args, out)->Path:
    "Run `miniai fit args`, Ctrl-C it once its first checkpoint exists (after epoch 1); the checkpoint the resume line names."
    p = subprocess.Popen([MINIAI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        t = time.time()
        while not list(out.parent.glob(f'{out.name}.run-*/checkpoint.pt')) and p.poll() is None and time.time() - t < 120:
            time.sleep(0.01)
        p.send_signal(signal.SIGINT)
        _,err = p.communicate(timeout=120)
    finally:
        if p.poll() is None: p.kill(); p.communicate()
    assert p.returncode == 130, err
    return Path(err.strip().splitlines()[-1].split(' --resume ')[-1])

@slow
@real_data
@pytest.mark.skipif(os.name != 'posix', reason='SIGINT to a subprocess is POSIX')
@pytest.mark.parametrize('how', ['kept', 'added'])
def test_tensorboard_and_csv_go_on_after_resume(tmp_path, how):
    """Ctrl-C after the first epoch, then `--resume`: kept, the run's --csv and --tensorboard (not given again) go on,
    no update's scalars or row twice; added by the resume, the CSV is the whole table and the scalars start at the resume."""
    out,tb,f = tmp_path/'o',tmp_path/'tb',tmp_path/'m.csv'
    base = ['fit', '--epochs', '3', '--n-train', '2048', '--n-valid', '256', '--bs', '256', '--quiet', '--out', str(out)]
    logs = ['--tensorboard', str(tb), '--csv', str(f)]
    ck = _stopped_after_an_epoch(base + logs if how == 'kept' else base, out)
    n0 = load_checkpoint(ck)['pos']['n_updates']
    assert 0 < n0 < 24, n0
    r = run('fit', '--resume', str(ck), '--out', str(out), '--quiet', *(logs if how == 'added' else []))
    assert r.returncode == 0, r.stderr
    check_logs(tb, f, 3, 8, first=1 if how == 'kept' else n0 + 1)

def test_tensorboard_missing_is_one_clear_error(tmp_path):
    "Without the tensorboard package: one line naming `pip install tensorboard`, before any run folder or data."
    shadow = tmp_path/'shadow'/'tensorboard'; shadow.mkdir(parents=True)
    (shadow/'__init__.py').write_text("raise ImportError(\"No module named 'tensorboard'\")\n")
    env = {**os.environ, 'PYTHONPATH': str(shadow.parent) + os.pathsep + os.environ.get('PYTHONPATH', '')}
    one_clear_line(run('fit', '--tensorboard', str(tmp_path/'tb'), '--out', str(tmp_path/'o'), '--data', 'nowhere', env=env),
                   '--tensorboard', 'pip install tensorboard')
    assert sorted(os.listdir(tmp_path)) == ['shadow']

def test_csv_and_tensorboard_paths_checked_first(tmp_path):
    "A --csv that is a folder or under a file, a --tensorboard that is a file: one line each, nothing made."
    f = tmp_path/'f'; f.write_text('mine')
    for args,msg in [(['--csv', str(tmp_path)], 'is a folder'), (['--csv', str(f/'m.csv')], f"{str(f)!r} is a file, not a folder"),
                     (['--tensorboard', str(f)], 'is a file, not a folder'), (['--tensorboard', str(f/'tb')], 'is a file, not a folder')]:
        one_clear_line(run('fit', *args, '--out', str(tmp_path/'o'), '--data', 'nowhere'), args[0] + '=', msg)
    assert sorted(os.listdir(tmp_path)) == ['f'] and f.read_text() == 'mine'
