"""Issue 20: test-time augmentation with more views than the mirror image, on held-out images.

Loads a `--preset best` ResNet trained by `bench/recipe_variants.py --model best --save FILE` (on the first 50,000
training images) and scores it on the last 10,000 with sets of views averaged (softmax): the image alone, with its
mirror (`flip_tta`), with shifts of one pixel (padding with the background, as `random_crop_flip` pads), and both.
Each view is one more forward pass over the images. One thread. Run: `python bench/tta_views.py FILE`."""
import json, sys
import torch
import torch.nn.functional as F
from miniai.resnet import resnet
from miniai.learner import TrainLearner
from miniai.batches import MemoryDL
from miniai.datasets import fashion_mnist_tensors, FASHION_MEAN, FASHION_STD

def shift(x, dy:int, dx:int):
    "The batch `x` moved by (dy, dx) pixels, padded with its minimum (the background), cropped back to its size."
    h,w = x.shape[-2:]
    p = F.pad(x, (1, 1, 1, 1), value=float(x.amin()))
    return p[..., 1+dy:1+dy+h, 1+dx:1+dx+w]

VIEWS = {'id': lambda x: x, 'flip': lambda x: x.flip(-1)}
for dy,dx in [(1, 0), (-1, 0), (0, 1), (0, -1)]:
    VIEWS[f'shift{dy},{dx}'] = lambda x, dy=dy, dx=dx: shift(x, dy, dx)
    VIEWS[f'flip+shift{dy},{dx}'] = lambda x, dy=dy, dx=dx: shift(x.flip(-1), dy, dx)
SETS = {'image alone': ['id'], 'and its mirror (flip_tta)': ['id', 'flip'],
        'and 4 shifts': ['id', 'shift1,0', 'shift-1,0', 'shift0,1', 'shift0,-1'],
        'mirror, sideways shifts of both (6)': ['id', 'flip', 'shift0,1', 'shift0,-1', 'flip+shift0,1', 'flip+shift0,-1'],
        'mirror, up/down shifts of both (6)': ['id', 'flip', 'shift1,0', 'shift-1,0', 'flip+shift1,0', 'flip+shift-1,0'],
        'mirror, all shifts of both (10)': list(VIEWS)}

def main(path):
    torch.set_num_threads(1)
    model = resnet(nfs=(16, 32, 64, 128))
    TrainLearner(model, None, F.cross_entropy).load(path)
    xt, yt = fashion_mnist_tensors()['train']
    dl = MemoryDL(xt[50000:], yt[50000:], 1024, mean=FASHION_MEAN, std=FASHION_STD)
    model.eval()
    probs, ys = {k: [] for k in VIEWS}, []
    with torch.no_grad():
        for xb,yb in dl:
            xb = xb.contiguous(memory_format=torch.channels_last); ys.append(yb)
            for k,f in VIEWS.items(): probs[k].append(model(f(xb)).float().softmax(-1))
    y = torch.cat(ys)
    probs = {k: torch.cat(v) for k,v in probs.items()}
    res = {k: round((sum(probs[v] for v in vs).argmax(-1) == y).float().mean().item(), 4) for k,vs in SETS.items()}
    print(json.dumps(dict(weights=str(path), **res)))
    return res

if __name__ == '__main__': main(sys.argv[1])
