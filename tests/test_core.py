"""Tests of miniai.core: atomic_write keeps the old file on failure, gives new files the umask's mode without ever
changing the process umask, and cleans only its own stale temporary files."""
import os, threading, time
from pathlib import Path

import pytest

import miniai.core as core
from miniai.core import atomic_write, clean_stale_tmp


@pytest.fixture
def umask027():
    "Run the test under umask 0o027 (restored after)."
    old = os.umask(0o027)
    yield 0o027
    os.umask(old)

def mode(p): return Path(p).stat().st_mode & 0o777


def test_failed_write_keeps_old_file(tmp_path):
    atomic_write(tmp_path/'a', lambda f: f.write(b'old'))
    def boom(f): f.write(b'half'); raise OSError('disk full')
    with pytest.raises(OSError, match='disk full'): atomic_write(tmp_path/'a', boom)
    assert (tmp_path/'a').read_bytes() == b'old' and [p.name for p in tmp_path.iterdir()] == ['a']

def test_mode_is_umask_of_a_new_file(tmp_path, umask027):
    atomic_write(tmp_path/'new', lambda f: f.write(b'x'))
    (tmp_path/'old').write_bytes(b'y'); os.chmod(tmp_path/'old', 0o600)
    atomic_write(tmp_path/'old', lambda f: f.write(b'z'))
    assert mode(tmp_path/'new') == 0o666 & ~umask027 == mode(tmp_path/'old')

def test_never_calls_umask(tmp_path, umask027, monkeypatch):
    def no(*a): raise AssertionError('os.umask called after import')
    monkeypatch.setattr(os, 'umask', no)
    atomic_write(tmp_path/'a', lambda f: f.write(b'x'))
    assert mode(tmp_path/'a') == 0o640

def test_threads_never_get_a_wider_mode(tmp_path, umask027):
    "Files created by other threads while atomic_write runs in a loop all get 0o666 & ~umask (the old code gave 0o666)."
    stop, bad = threading.Event(), []
    def creator(i):
        k = 0
        while not stop.is_set():
            p = tmp_path/f'other-{i}-{k}'; k += 1
            with open(p, 'wb'): pass
            if mode(p) != 0o640: bad.append((p.name, oct(mode(p))))
            p.unlink()
    ts = [threading.Thread(target=creator, args=(i,)) for i in range(2)]
    for t in ts: t.start()
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < 1.: atomic_write(tmp_path/'target', lambda f: f.write(b'x'))
    finally:
        stop.set()
        for t in ts: t.join()
    assert bad == []

def test_refuses_a_folder(tmp_path):
    (tmp_path/'d').mkdir()
    with pytest.raises(IsADirectoryError, match='is a folder'): atomic_write(tmp_path/'d', lambda f: f.write(b'x'))
    assert (tmp_path/'d').is_dir()

def test_temp_name_is_recognised(tmp_path, monkeypatch):
    "The temporary files atomic_write makes are exactly those clean_stale_tmp would remove once stale."
    seen = []
    def write(f): seen.extend(p.name for p in tmp_path.iterdir())
    atomic_write(tmp_path/'x.pt', write)
    assert len(seen) == 1 and core._TMP_RE.match(seen[0]) and seen[0].startswith('.x.pt.')

def test_clean_stale_tmp(tmp_path):
    old = time.time() - 3600
    stale = tmp_path/'.a.pt.miniai-0123abcd.tmp'
    keep = [tmp_path/'.a.pt.miniai-4567cdef.tmp',  # fresh: maybe being written now
            tmp_path/'.a.pt.abcd1234.tmp',         # another tool's temporary file
            tmp_path/'a.pt.miniai-0123abcd.tmp',   # not hidden: not our naming
            tmp_path/'.a.pt.miniai-0123abcd.tmp.bak', tmp_path/'user.txt']
    for p in [stale] + keep: p.write_bytes(b'j')
    for p in [stale] + keep[1:]: os.utime(p, (old, old))
    (tmp_path/'.d.miniai-89abcdef.tmp').mkdir(); os.utime(tmp_path/'.d.miniai-89abcdef.tmp', (old, old))  # a folder: never
    atomic_write(tmp_path/'b.pt', lambda f: f.write(b'x'))  # cleans its folder
    assert not stale.exists() and all(p.exists() for p in keep) and (tmp_path/'.d.miniai-89abcdef.tmp').is_dir()
    assert clean_stale_tmp(tmp_path, older_than=0) == [keep[0]]
    assert clean_stale_tmp(tmp_path/'missing') == []

@pytest.mark.parametrize('bad', [-1, 'soon', None, True, float('nan')])
def test_clean_stale_tmp_refuses_bad_age(tmp_path, bad):
    with pytest.raises(ValueError, match='older_than='): clean_stale_tmp(tmp_path, older_than=bad)
