"`miniai fit` as users run it: a real subprocess, real data (a subset), real files."
import csv, subprocess, sys
from pathlib import Path
import pytest
from conftest import real_data

MINIAI = str(Path(sys.executable).with_name('miniai'))

def run(*args, exe=(MINIAI,)):
    return subprocess.run([*exe, *args], capture_output=True, text=True, timeout=600)

@pytest.mark.parametrize('args,msg', [
    (['fit', '--epochs', '-1'], "--epochs='-1': must be an int > 0"),
    (['fit', '--epochs', '0'], "--epochs='0'"),
    (['fit', '--lr', '0'], "--lr='0'"),
    (['fit', '--lr=-3e-2'], "--lr='-3e-2'"),
    (['fit', '--lr', 'fast'], "--lr='fast'"),
    (['fit', '--pct-start', '1.5'], "--pct-start='1.5'"),
    (['fit', '--sched', 'steps'], "invalid choice: 'steps'"),
    (['fit', '--frobnicate'], 'unrecognized arguments: --frobnicate'),
    ([], 'the following arguments are required: cmd'),
])
def test_bad_arguments_one_line(args, msg):
    r = run(*args)
    assert r.returncode == 2
    assert msg in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stdout == ''

def test_missing_data_is_one_clear_error(tmp_path):
    r = run('fit', '--epochs', '1', '--data', str(tmp_path/'nowhere'), '--out', str(tmp_path/'o'))
    assert r.returncode != 0
    assert 'Traceback' not in r.stderr and 'nowhere' in r.stderr

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
    assert [l.split()[0] for l in table[1:3]] == ['0', '1']

@real_data
def test_sched_none_and_cosine(tmp_path):
    for s in ('none', 'cosine'):
        r = run('fit', '--epochs', '1', '--n-train', '2048', '--n-valid', '512', '--sched', s, '--out', str(tmp_path/s), '--quiet')
        assert r.returncode == 0, r.stderr
        assert (tmp_path/s/'metrics.csv').exists()
