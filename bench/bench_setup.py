"""Two fixed costs of every `make train`, each against what it was, alternated in one run (ratios of medians count).

- `bench_setup`: the set-up check when everything is installed, `bash tools/setup.sh` now, against the check it made
  until 2026-12-07 (`import miniai.learner` from outside the tree, which imported torch).
- `bench_exit`: the end of the process once `miniai fit`'s modules are imported, from the last line of Python to the
  process's end: Python's normal exit (the interpreter's teardown) against `miniai.cli._quick_exit` (what
  `console_main` does: atexit functions, flush, `os._exit`).

Both run as subprocesses with the same Python."""
import statistics, subprocess, sys, time
from pathlib import Path

repo = Path(__file__).resolve().parent.parent

def _wall(cmd, cwd)->float:
    t = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - t

def bench_setup(rounds:int=5)->dict:
    "Seconds (median of `rounds`, alternated) of the whole up-to-date `setup.sh` and of the old check's one import."
    venv_py = str(Path(sys.executable).absolute())
    new, old = [], []
    for _ in range(rounds):
        new.append(_wall(['bash', str(repo/'tools/setup.sh')], repo))
        old.append(_wall([venv_py, '-c', 'import miniai.learner'], '/'))
    med = dict(setup_sh_now=statistics.median(new), old_check_alone=statistics.median(old))
    return dict(seconds=med, ratio_now_old=med['setup_sh_now'] / med['old_check_alone'], rounds=rounds)

_EXIT = ("import torch, matplotlib.figure, torcheval.metrics, miniai.learner, miniai.presets, miniai.datasets, miniai.cli\n"
         "import sys, time\nsys.stderr.write(repr(time.time())); sys.stderr.flush()\n")

def bench_exit(rounds:int=5)->dict:
    "Seconds from the last statement to the process's end (median of `rounds`, alternated): normal exit, `_quick_exit(0)`."
    cases = dict(normal=_EXIT, quick=_EXIT + "miniai.cli._quick_exit(0)\n")
    ts = {k: [] for k in cases}
    for _ in range(rounds):
        for k,code in cases.items():
            r = subprocess.run([sys.executable, '-c', code], cwd='/', check=True, capture_output=True, text=True)
            ts[k].append(time.time() - float(r.stderr.strip().split()[-1]))
    med = {k: statistics.median(v) for k,v in ts.items()}
    return dict(seconds=med, saved=med['normal'] - med['quick'], rounds=rounds)

if __name__ == '__main__': print(bench_setup()); print(bench_exit())
