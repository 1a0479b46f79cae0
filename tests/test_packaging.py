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
