"""`keep_freed_memory` (04_threads) where it cannot apply: it answers False and changes nothing, never an error.
Its effect on glibc is checked in the notebook (page faults of a fresh process) and in test_cli.py (after `miniai fit`)."""
import ctypes
import miniai.threads as threads

def test_keep_freed_memory_off_linux_is_false(monkeypatch):
    monkeypatch.setattr(threads.sys, 'platform', 'darwin')
    monkeypatch.setattr(threads.ctypes, 'CDLL', lambda *a, **k: (_ for _ in ()).throw(AssertionError('no C library call off Linux')))
    assert threads.keep_freed_memory() is False

class _Musl:
    "A C library with a `mallopt` that must not be called (musl's does nothing), and no `gnu_get_libc_version`."
    def __getattr__(self, name):
        if name == 'mallopt': raise AssertionError('mallopt called on a C library that is not glibc')
        raise AttributeError(name)

def test_keep_freed_memory_not_glibc_is_false(monkeypatch):
    monkeypatch.setattr(threads.sys, 'platform', 'linux')
    monkeypatch.setattr(threads.ctypes, 'CDLL', lambda *a, **k: _Musl())
    assert threads.keep_freed_memory() is False

def test_keep_freed_memory_refused_setting_is_false(monkeypatch):
    "glibc refuses a value (mallopt returns 0): the answer is False, and the call saw glibc's parameter numbers."
    calls = []
    class _Mallopt:
        argtypes = restype = None
        def __call__(self, param, value): calls.append((param, value)); return 0
    class _Glibc:
        gnu_get_libc_version = object()
        mallopt = _Mallopt()
    monkeypatch.setattr(threads.sys, 'platform', 'linux')
    monkeypatch.setattr(threads.ctypes, 'CDLL', lambda *a, **k: _Glibc())
    assert threads.keep_freed_memory() is False
    assert calls[0] == (-3, 32 << 20)  # M_MMAP_THRESHOLD
    assert _Glibc.mallopt.argtypes == (ctypes.c_int, ctypes.c_int)
