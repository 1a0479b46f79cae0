"""Issue 17: what the code-free, checksummed checkpoint costs against the old pickle one, on the default job's state.

The state is the one `CheckpointCB` writes for `miniai fit` (fast_net, miniai's AdamW after some updates, MetricsCB,
BatchSchedCB with OneCycle, RecorderCB). Each round writes and reads it both ways, alternated (atomic_write with fsync
in both): old = torch.save / torch.load(weights_only=False); new = miniai.safefile (safetensors + JSON + an xxh3-128 checksum).
Reports medians and the ratio new/old, and the checksum's own share of the new write and read."""
import statistics, sys, tempfile, time
from functools import partial
from pathlib import Path
import torch

def _state():
    import torch.nn.functional as F
    from miniai.fastnet import fast_net
    from miniai.optim import AdamW
    from miniai.learner import TrainLearner, MetricsCB
    from miniai.sched import BatchSchedCB, OneCycle, RecorderCB
    torch.manual_seed(0)
    x = torch.randn(2048, 1, 28, 28); y = torch.randint(0, 10, (2048,))
    dl = [(x[i:i+256], y[i:i+256]) for i in range(0, 2048, 256)]
    class DLs: train,valid = dl,dl[:2]
    mcb = MetricsCB(quiet=True)
    learn = TrainLearner(fast_net(), DLs(), F.cross_entropy, lr=4e-2, opt_func=AdamW,
                         cbs=[mcb, BatchSchedCB(partial(OneCycle, max_lr=4e-2)), RecorderCB()])
    learn.fit(1)
    return learn.fit_state()

def bench_ckpt(rounds:int=15)->dict:
    from miniai.core import atomic_write
    from miniai.safefile import save_state, load_state, _checksum, _SUM
    torch.set_num_threads(1)
    st = _state()
    d = Path(tempfile.mkdtemp())
    t = {k: [] for k in ('old_write', 'new_write', 'old_read', 'new_read', 'digest')}
    for _ in range(rounds):
        a = time.perf_counter(); atomic_write(d/'old.pt', lambda f: torch.save(st, f)); t['old_write'].append(time.perf_counter() - a)
        a = time.perf_counter(); save_state(d/'new.pt', st, 'miniai-fit'); t['new_write'].append(time.perf_counter() - a)
        a = time.perf_counter(); torch.load(d/'old.pt', map_location='cpu', weights_only=False); t['old_read'].append(time.perf_counter() - a)
        a = time.perf_counter(); load_state(d/'new.pt'); t['new_read'].append(time.perf_counter() - a)
        b = (d/'new.pt').read_bytes(); at = b.index(f'"{_SUM}":"'.encode()) + len(_SUM) + 4
        a = time.perf_counter(); _checksum(b, at); t['digest'].append(time.perf_counter() - a)
    med = {k: statistics.median(v) for k,v in t.items()}
    return dict(ms={k: round(v * 1e3, 3) for k,v in med.items()},
                bytes=dict(old=(d/'old.pt').stat().st_size, new=(d/'new.pt').stat().st_size),
                ratio_write=med['new_write'] / med['old_write'], ratio_read=med['new_read'] / med['old_read'],
                digest_share_of_write=med['digest'] / med['new_write'], digest_share_of_read=med['digest'] / med['new_read'])

if __name__ == '__main__':
    import json
    print(json.dumps(bench_ckpt(int(sys.argv[1]) if len(sys.argv) > 1 else 15), indent=1))
