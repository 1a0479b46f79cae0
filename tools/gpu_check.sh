#!/usr/bin/env bash
# Checks miniai's fp16 and accelerate paths on CUDA (a few minutes at most on one GPU; the 2-process part needs 2 GPUs):
#   0. a plain Learner with MixedPrecisionCB('fp16') (GradScaler) + GradAccumCB(2), stopped and resumed exactly;
#      then `miniai fit --precision fp16 --accum 2` (the CLI);
#   1. a 1-process AccelerateCB fit with fp16 (accelerate's GradScaler) and GradAccumCB(2), uninterrupted;
#   2. the same fit stopped after 3 updates (checkpoint) and resumed: the same lrs, updates and weights as 1.;
#   3. with 2 GPUs (or --cpu): a 2-process DDP fit (torchrun), stopped and resumed the same way, ranks' draws differ.
# Usage: tools/gpu_check.sh [--cpu]      --cpu: the same checks on CPU (bf16 for 0., precision 'no' for accelerate, gloo), e.g. in the tests.
# Exit status 0 and "gpu_check: all OK" at the end when every check passed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
CPU=0; [ "${1:-}" = "--cpu" ] && CPU=1
if [ $# -gt 0 ] && [ "$1" != "--cpu" ]; then echo "gpu_check: unknown option $1 (allowed: --cpu)" >&2; exit 2; fi
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ $CPU = 1 ]; then
  export CUDA_VISIBLE_DEVICES=""; PREC=no; NGPU=2
else
  NGPU=$("$PY" -c 'import torch; print(torch.cuda.device_count())')
  [ "$NGPU" -ge 1 ] || { echo "gpu_check: no CUDA device (torch.cuda.device_count() == 0); use --cpu to check on CPU" >&2; exit 1; }
  PREC=fp16
  "$PY" -c 'import torch; print("gpu_check: torch", torch.__version__, "CUDA", torch.version.cuda, "on", torch.cuda.get_device_name(0), "x", torch.cuda.device_count())'
fi
D=$(mktemp -d); trap 'rm -rf "$D"' EXIT
ARGS=(--bs 64 --n-train 1536 --n-valid 500 --epochs 2 --accum 2 --precision $PREC --quiet)

compare() {  # compare DIR_A DIR_B RANK: same lrs, updates, history and weights
  "$PY" - "$1" "$2" "$3" <<'PYEOF'
import json, sys, torch
a,b,r = sys.argv[1:]
ra,rb = (json.load(open(f'{d}/rank{r}.json')) for d in (a, b))
assert ra['lrs'] == rb['lrs'] and ra['updates'] == rb['updates'], ('lrs/updates differ', ra['updates'], rb['updates'])
h = lambda r: [{k: v for k,v in x.items() if k != 'time'} for x in r['history']]
assert h(ra) == h(rb), ('metrics differ', h(ra), h(rb))
wa,wb = torch.load(f'{a}/model{r}.pt'),torch.load(f'{b}/model{r}.pt')
bad = [k for k in wa if not torch.equal(wa[k], wb[k])]
assert not bad, ('weights differ', bad[:3])
da = {(e, i): v for e,i,v in ra['draws']}
assert all(da[(e, i)] == v for e,i,v in rb['draws']), 'random draws differ after the resume'
print(f"gpu_check:   rank {r}: {ra['updates']} updates, lrs, metrics, weights and draws equal; valid accuracy {ra['history'][-1]['accuracy']:.4f}")
PYEOF
}

MP=$([ $CPU = 1 ] && echo bf16 || echo fp16)
echo "gpu_check: plain Learner, MixedPrecisionCB('$MP') (a GradScaler with fp16) + GradAccumCB(2): stopped after 3 updates and resumed = uninterrupted"
"$PY" - "$D" "$MP" <<'PYEOF'
import sys, torch, torch.nn.functional as F
from functools import partial
from miniai.activations import set_seed
from miniai.checkpoint import CheckpointCB
from miniai.datasets import get_dls
from miniai.init import conv_net
from miniai.learner import TrainLearner, GradAccumCB, DeviceCB
from miniai.precision import MixedPrecisionCB
from miniai.sched import BatchSchedCB, OneCycle
from tools.accel_fit import StopAfterCB
d,mp = sys.argv[1:]
dev = 'cuda' if torch.cuda.is_available() else 'cpu'
def fit(stop=None, resume=None):
    set_seed(42)
    learn = TrainLearner(conv_net(), get_dls(bs=64, n_train=1536, n_valid=500), F.cross_entropy, lr=6e-2, thread_guard=False,
                         opt_func=partial(torch.optim.AdamW, eps=1e-5),
                         cbs=[DeviceCB(dev), MixedPrecisionCB(mp), GradAccumCB(2), BatchSchedCB(partial(OneCycle, pct_start=0.25)),
                              CheckpointCB(f'{d}/mp.ck', verbose=False)] + ([StopAfterCB(stop)] if stop else []))
    learn.fit(2, resume=resume)
    return learn
a = fit()
fit(stop=3)
b = fit(resume=f'{d}/mp.ck')
assert a.n_updates == b.n_updates, (a.n_updates, b.n_updates)
bad = [k for k,v in a.model.state_dict().items() if not torch.equal(v, b.model.state_dict()[k])]
assert not bad, ('weights differ after the resume', bad[:3])
sc = a.scaler.get_scale() if a.scaler.is_enabled() else None
assert sc == (b.scaler.get_scale() if b.scaler.is_enabled() else None), 'grad scaler scale differs'
print(f"gpu_check:   {a.n_updates} updates on {dev}, weights equal; grad scaler {'scale %g' % sc if sc else 'off (bf16)'}")
PYEOF
echo "gpu_check: miniai fit --precision $MP --accum 2 (the CLI, one process)"
"$PY" -m miniai fit --precision $MP --accum 2 --n-train 2048 --n-valid 500 --epochs 1 --quiet --out "$D/cli" --threads 1

echo "gpu_check: 1 process, precision $PREC, GradAccumCB(2): uninterrupted, then stopped after 3 updates and resumed"
"$PY" tools/accel_fit.py "${ARGS[@]}" --record "$D/one"
"$PY" tools/accel_fit.py "${ARGS[@]}" --ckpt "$D/one.ck" --stop-after 3
"$PY" tools/accel_fit.py "${ARGS[@]}" --ckpt "$D/one.ck" --resume "$D/one.ck" --record "$D/one_resumed"
compare "$D/one" "$D/one_resumed" 0

if [ "$NGPU" -ge 2 ]; then
  echo "gpu_check: 2 processes (DDP), precision $PREC, GradAccumCB(2): uninterrupted, then stopped after 3 updates and resumed"
  RUN=("$PY" -m torch.distributed.run --standalone --nproc_per_node 2 tools/accel_fit.py "${ARGS[@]}")
  "${RUN[@]}" --record "$D/two"
  "${RUN[@]}" --ckpt "$D/two.ck" --stop-after 3
  "${RUN[@]}" --ckpt "$D/two.ck" --resume "$D/two.ck" --record "$D/two_resumed"
  compare "$D/two" "$D/two_resumed" 0
  compare "$D/two" "$D/two_resumed" 1
  "$PY" - "$D/two" <<'PYEOF'
import json, sys
r0,r1 = (json.load(open(f'{sys.argv[1]}/rank{r}.json')) for r in (0, 1))
assert [v for *_,v in r0['draws']] != [v for *_,v in r1['draws']], 'both ranks drew the same random numbers'
print('gpu_check:   the two ranks drew different random numbers')
PYEOF
else
  echo "gpu_check: one GPU: the 2-process check is skipped (it needs 2)"
fi
echo "gpu_check: all OK"
