"What a user who installs miniai gets: its version, its licence, type information, the extras README names."
import re, subprocess, sys, zipfile
from configparser import ConfigParser
from pathlib import Path
import miniai

ROOT = Path(__file__).parent.parent
cfg = ConfigParser(delimiters=['=']); cfg.read(ROOT/'settings.ini', encoding='utf-8'); cfg = cfg['DEFAULT']

def test_version_is_settings_ini_s():
    assert miniai.__version__ == cfg['version'] and re.fullmatch(r'\d+\.\d+\.\d+', miniai.__version__)

def test_importing_miniai_reads_no_metadata():
    "`__version__` is computed when asked: `import miniai` alone imports nothing else."
    r = subprocess.run([sys.executable, '-c', 'import sys, miniai; print("importlib.metadata" in sys.modules, miniai.__version__)'],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.stdout.split() == ['False', cfg['version']], r.stderr

def test_unknown_attribute_is_an_attribute_error():
    import pytest
    with pytest.raises(AttributeError, match="no attribute 'nope'"): miniai.nope

def test_licence_is_apache_2():
    assert cfg['license'] == 'apache2'
    text = (ROOT/'LICENSE').read_text()
    assert 'Apache License' in text and 'Version 2.0, January 2004' in text and 'END OF TERMS AND CONDITIONS' in text

def test_wheel_holds_py_typed_and_the_extras(tmp_path):
    "A wheel built from the checkout ships py.typed (PEP 561) and declares the `dev` and `tensorboard` extras."
    r = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', str(tmp_path), str(ROOT)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    whl, = tmp_path.glob('miniai-*.whl')
    z = zipfile.ZipFile(whl)
    assert 'miniai/py.typed' in z.namelist()
    meta = z.read(next(n for n in z.namelist() if n.endswith('METADATA'))).decode()
    assert {'dev', 'tensorboard'} <= set(re.findall(r'^Provides-Extra: (\S+)', meta, re.M))
    assert re.search(r'^Requires-Dist: torch>=2\.5', meta, re.M) and re.search(r'^Requires-Dist: matplotlib>=3\.9', meta, re.M)

# tools/installed.py: setup.sh's "is the install still there" check, which `make train` and `make test` run every time.
def _installed(*args, py=sys.executable):
    return subprocess.run([py, str(ROOT/'tools/installed.py'), *args], capture_output=True, text=True, cwd='/')

def test_setup_check_passes_here_without_importing_torch():
    "This environment has everything settings.ini requires; asking must not import torch (the old check did: 1.2-3 s)."
    assert _installed(str(ROOT/'settings.ini')).returncode == 0
    code = (f"import runpy, sys; sys.argv = ['installed.py', {str(ROOT/'settings.ini')!r}]\n"
            f"try: runpy.run_path({str(ROOT/'tools/installed.py')!r}, run_name='__main__')\n"
            "except SystemExit as e: print(e.code, sorted(m for m in ('torch', 'matplotlib', 'datasets', 'miniai.learner') if m in sys.modules))")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd='/')
    assert r.stdout.split() == ['0', '[]'], (r.stdout, r.stderr)

def test_setup_check_names_what_is_missing(tmp_path):
    "A requirement with no installed distribution fails the check, by name; so does a Python without site-packages."
    s = tmp_path/'settings.ini'
    s.write_text("[DEFAULT]\nrequirements = torch>=2.5 no-such-dist-miniai>=1\ndev_requirements = pytest\n")
    r = _installed(str(s))
    assert r.returncode == 1 and 'no-such-dist-miniai' in r.stderr and 'torch' not in r.stderr.split(':')[-1], r.stderr
    r = subprocess.run([sys.executable, '-S', str(ROOT/'tools/installed.py'), str(ROOT/'settings.ini')],
                       capture_output=True, text=True, cwd='/')
    assert r.returncode == 1 and 'miniai' in r.stderr and 'the module miniai.learner' in r.stderr, r.stderr

def test_setup_check_catches_an_install_that_maps_no_modules(monkeypatch):
    "An editable install made before miniai/ had modules: the distribution is there, `miniai.learner` is not found."
    sys.path.insert(0, str(ROOT/'tools'))
    try: import installed
    finally: sys.path.remove(str(ROOT/'tools'))
    assert installed.missing(ROOT/'settings.ini') == []
    monkeypatch.setattr(installed, 'find_spec', lambda name: None)
    assert installed.missing(ROOT/'settings.ini') == ['the module miniai.learner']
    assert set(installed.required(ROOT/'settings.ini')) >= {'torch', 'fastcore', 'accelerate', 'nbdev', 'pytorch-accelerated'}
