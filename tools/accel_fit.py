"""Train miniai's Fashion-MNIST conv net under `AccelerateCB`, on one process or on N launched ones.

    OMP_NUM_THREADS=1 python -m torch.distributed.run --standalone --nproc_per_node 2 tools/accel_fit.py --n-train 2048
    OMP_NUM_THREADS=1 accelerate launch --multi_gpu --num_processes 2 tools/accel_fit.py ...   # also on a CPU-only machine
    python tools/accel_fit.py ...                                                              # one process

(`accelerate launch --cpu --num_processes 2` starts only ONE process in accelerate 1.15: its --cpu path is the
single-process launcher; multi-CPU needs --multi_gpu, which on a machine without GPUs gives DistributedType.MULTI_CPU.)

`--bs` is the per-process batch size: a global batch (one optimizer update) is `bs * N` samples. The model, data,
optimizer (AdamW) and OneCycle schedule are those of `miniai fit` (`miniai.cli.fit_fashion_mnist`). With `--record DIR`
each process writes `DIR/rank{r}.json` (the training rows it saw each epoch, the lr of every update, the metrics
table, a `torch.rand` drawn at each training batch) and `DIR/model{r}.pt` (its final weights: DDP keeps them equal).
"""
import argparse, json, os, sys, time
from functools import partial
from pathlib import Path

def make_parser()->argparse.ArgumentParser:
    "The options: those of `miniai fit` that apply here."
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--epochs', type=int, default=2)
    p.add_argument('--lr', type=float, default=6e-2)
    p.add_argument('--bs', type=int, default=256, help='per-process batch size (global batch = bs * processes)')
    p.add_argument('--seed', type=int, default=42)
    p.add_argument('--n-train', type=int, default=None)
    p.add_argument('--n-valid', type=int, default=None)
    p.add_argument('--accum', type=int, default=1)
    p.add_argument('--precision', choices=('no', 'bf16', 'fp16'), default='no', help="accelerate's mixed_precision")
    p.add_argument('--record', type=Path, default=None, help='folder for rank{r}.json and model.pt')
    p.add_argument('--quiet', action='store_true')
    p.add_argument('--ckpt', type=Path, default=None, help='CheckpointCB file (written by the main process)')
    p.add_argument('--stop-after', type=int, default=None, help='stop the fit (CancelFitException) after this many updates')
    p.add_argument('--resume', type=Path, default=None, help='continue the fit saved in this checkpoint')
    return p

class StopAfterCB:
    "Stops the fit after `n` optimizer updates, on every process at the same update (as an interruption would)."
    order = 60
    def __init__(self, n): self.n = n
    def after_batch(self, learn):
        "Called after each batch: raises CancelFitException once `n` updates are done."
        from miniai.learner import CancelFitException
        if learn.training and learn.n_updates >= self.n: raise CancelFitException()

class SeenCB:
    "Records the dataset rows of every training batch (from `ShardedDL.idx`, or the plain loader's order)."
    order = 50
    def before_fit(self, learn): self.seen = []
    def before_epoch(self, learn):
        if learn.training: self.seen.append([])
    def after_batch(self, learn):
        "Called after each batch: on a training batch, appends its rows to this epoch's list."
        dl = learn.dls.train
        if learn.training and getattr(dl, 'idx', None) is not None: self.seen[-1] += dl.idx.tolist()

class DrawCB:
    "Draws `torch.rand(1)` at each training batch (as an augmentation would) and records it with the batch's place, for the per-rank RNG checks."
    order = 55
    def before_fit(self, learn): self.draws = []
    def before_batch(self, learn):
        "Called before each batch: on a training batch, draws and records [epoch, iter, value]."
        import torch
        if learn.training: self.draws.append([learn.epoch, learn.iter, torch.rand(1).item()])

def fit(epochs=2, lr=6e-2, bs=256, seed=42, n_train=None, n_valid=None, accum=1, precision='no', record=None,
        quiet=False, accelerator=None, ckpt=None, stop_after=None, resume=None)->dict:
    "Build and train; returns the main process's metrics table, the lrs of every update, the rows seen, the learner."
    import torch
    import torch.nn.functional as F
    from torch import optim
    from torcheval.metrics import MulticlassAccuracy
    from miniai.accel import AccelerateCB
    from miniai.activations import set_seed
    from miniai.datasets import get_dls
    from miniai.init import conv_net
    from miniai.learner import TrainLearner, MetricsCB, ProgressCB, GradAccumCB
    from miniai.sched import BatchSchedCB, OneCycle, RecorderCB, rec_lr

    set_seed(seed)  # the same seed on every process: same weights, same data order (ShardedDL also broadcasts it)
    dls = get_dls(bs=bs, n_train=n_train, n_valid=n_valid)
    model = conv_net()
    metrics,rec,seen,draw = MetricsCB(accuracy=MulticlassAccuracy()),RecorderCB(lr=rec_lr),SeenCB(),DrawCB()
    acb = AccelerateCB(accelerator, mixed_precision=precision)
    cbs = [acb, metrics, rec, seen, draw, BatchSchedCB(partial(OneCycle, pct_start=0.25))]
    if quiet: metrics.listeners.clear()
    else: cbs.append(ProgressCB())
    if accum > 1: cbs.append(GradAccumCB(accum))
    if ckpt is not None:
        from miniai.checkpoint import CheckpointCB
        cbs.append(CheckpointCB(ckpt, verbose=False))
    if stop_after is not None: cbs.append(StopAfterCB(stop_after))
    learn = TrainLearner(model, dls, F.cross_entropy, lr=lr, cbs=cbs, opt_func=partial(optim.AdamW, eps=1e-5))
    t0 = time.perf_counter()
    learn.fit(epochs, resume=resume)
    secs = time.perf_counter() - t0
    acc = acb.accelerator
    res = dict(rank=acc.process_index, world=acc.num_processes, history=metrics.history, lrs=rec.recs['lr'],
               seen=seen.seen, draws=draw.draws, seconds=secs, n_train=len(dls.train.x), updates=learn.n_updates,
               no_sync_batches=acb.no_sync_batches)
    if record is not None:
        record = Path(record); record.mkdir(parents=True, exist_ok=True)
        (record/f'rank{acc.process_index}.json').write_text(json.dumps(res))
        torch.save(learn.model.state_dict(), record/f'model{acc.process_index}.pt')  # model0.pt: the main process's
    res['learn'] = learn
    return res

def main(argv=None):
    "Entry point: parse, train, close the process group."
    a = make_parser().parse_args(argv)
    res = fit(a.epochs, a.lr, a.bs, a.seed, a.n_train, a.n_valid, a.accum, a.precision, a.record, a.quiet,
              ckpt=a.ckpt, stop_after=a.stop_after, resume=a.resume)
    learn = res.pop('learn')
    acc = learn.cbs[0].accelerator
    if acc.is_main_process:
        imgs = res['n_train']*a.epochs/res['seconds']
        print(f"processes {res['world']}; {res['updates']} updates; {res['seconds']:.1f} s ({imgs:,.0f} training images/s, validation time included); "
              f"valid accuracy {res['history'][-1]['accuracy']:.4f}" if res['history'] else "stopped before any validation", flush=True)
    acc.end_training()  # destroys the process group: a clean exit

if __name__ == '__main__':
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
