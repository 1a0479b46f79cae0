"""Whether tools/setup.sh may skip the install: exit 0 when this Python has miniai's modules and every distribution that
settings.ini requires (runtime and dev), 1 with what is missing on stderr otherwise.

It reads package metadata and looks modules up (`find_spec`) without importing them. Importing `miniai.learner` to ask
the same question imported torch: 1.2 s on every `make train` and `make test` (3 s on an AVX2 machine), for a check.
Run it from outside the checkout (setup.sh does `cd /`), so that the folder miniai/ in the working tree does not stand
in for an install."""
import re, sys
from configparser import ConfigParser
from importlib.metadata import PackageNotFoundError, distribution
from importlib.util import find_spec
from pathlib import Path

def required(settings:Path)->list[str]:
    "The distribution names of settings.ini's `requirements` and `dev_requirements` (versions are the stamp's job)."
    cfg = ConfigParser(delimiters=['=']); cfg.read(settings, encoding='utf-8')
    specs = (cfg.get('DEFAULT', k, fallback='').split() for k in ('requirements', 'dev_requirements'))
    return [re.match(r'[A-Za-z0-9_.\-]+', s).group() for ss in specs for s in ss]

def missing(settings:Path)->list[str]:
    """What an install into this Python lacks: required distributions without metadata, and `miniai.learner` when no
    module is found for it (an editable install made before miniai/ had modules maps nothing)."""
    out = []
    for name in ['miniai', *required(settings)]:
        try: distribution(name)
        except PackageNotFoundError: out.append(name)
    try: found = find_spec('miniai.learner') is not None
    except ImportError: found = False  # no package `miniai` at all
    if not found: out.append('the module miniai.learner')
    return out

if __name__ == '__main__':
    gone = missing(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent/'settings.ini')
    if gone: print(f"setup: not installed here: {', '.join(gone)}", file=sys.stderr)
    sys.exit(1 if gone else 0)
