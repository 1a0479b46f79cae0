"""1 process vs 2 processes (DDP on CPU, gloo, one thread each) for a short fit of miniai's Fashion-MNIST conv net.

    .venv/bin/python bench/bench_accel.py [--epochs 2] [--repeats 2] [--n-train 60000] [--bs 512]

The same global batch (`--bs`) for both: 2 processes use `bs/2` each. Reports the fit's wall time, the training images
per second (validation included in the time) and the final validation accuracy. On a machine whose cores are shared
(with other jobs, or with the second process), expect no speed-up: see the notebook 30_accelerate for a reading.
"""
import argparse, os, re, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

def run(procs:int, epochs:int, n_train:int, bs:int)->dict:
    "Run tools/accel_fit.py on `procs` processes (one thread each); the numbers its main process prints."
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(ROOT), 'HF_HUB_OFFLINE': '1'}
    args = ['tools/accel_fit.py', '--epochs', str(epochs), '--n-train', str(n_train), '--bs', str(bs//procs), '--quiet']
    cmd = [sys.executable, *args] if procs == 1 else \
          [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', str(procs), *args]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    if out.returncode: sys.exit(f"{' '.join(cmd)} failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    m = re.search(r'processes (\d+); (\d+) updates; ([\d.]+) s \(([\d,]+) training images/s.*valid accuracy ([\d.]+)', out.stdout)
    return dict(procs=procs, updates=int(m[2]), fit_s=float(m[3]), img_s=float(m[4].replace(',', '')),
                acc=float(m[5]), wall_s=wall)

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--epochs', type=int, default=2); p.add_argument('--repeats', type=int, default=2); p.add_argument('--n-train', type=int, default=60000)
    p.add_argument('--bs', type=int, default=512, help='global batch size')
    a = p.parse_args()
    print(f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}; {a.epochs} epoch(s) of {a.n_train} images, "
          f"global batch {a.bs}, one thread per process")
    print(f"{'procs':>5} {'updates':>8} {'fit s':>8} {'img/s':>8} {'accuracy':>9} {'wall s':>8}")
    for n in [1, 2]*a.repeats:  # alternated, so a change in the machine's load hits both
        r = run(n, a.epochs, a.n_train, a.bs)
        print(f"{r['procs']:>5} {r['updates']:>8} {r['fit_s']:>8.1f} {r['img_s']:>8.0f} {r['acc']:>9.4f} {r['wall_s']:>8.1f}", flush=True)
