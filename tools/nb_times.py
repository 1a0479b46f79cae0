"""Time a reader's "Run All" of each notebook: every cell, the `#| slow` training runs included, in a fresh Jupyter
kernel started in nbs/ (nbclient, as `jupyter nbconvert --execute` does). The notebooks are read, never written.

    .venv/bin/python tools/nb_times.py [--out nb_times.json] [NAME ...]

Run it in a scratch clone: some notebooks refresh files under bench/ as they run. Prints and writes, per notebook,
the wall seconds and whether it ran without error."""
import argparse, json, platform, sys, time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

def run_all(path:Path)->dict:
    "Execute every cell of the notebook at `path` in a new kernel; its wall time and the first error, if any."
    nb = nbformat.read(path, as_version=4)
    t0,err = time.perf_counter(),None
    try: NotebookClient(nb, timeout=None, kernel_name='python3', resources={'metadata': {'path': str(path.parent)}}).execute()
    except Exception as e: err = f"{type(e).__name__}: {str(e)[-300:]}"
    return dict(seconds=round(time.perf_counter() - t0, 1), error=err)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('names', nargs='*', help='notebook stems (default: all of nbs/)')
    p.add_argument('--out', default='nb_times.json')
    a = p.parse_args(argv)
    nbs = sorted(Path('nbs').glob('*.ipynb'))
    if a.names: nbs = [n for n in nbs if n.stem in a.names]
    res = dict(machine=f"{platform.machine()} {platform.processor() or ''}".strip(), times={})
    for nb in nbs:
        r = res['times'][nb.stem] = run_all(nb)
        print(f"{nb.stem:24} {r['seconds']:8.1f} s  {r['error'] or 'ok'}", flush=True)
        Path(a.out).write_text(json.dumps(res, indent=1))

if __name__ == '__main__': main()
