"Small loaders the training tests share (imported by the tests and by the subprocess jobs they write)."
import torch

class DLs:
    "A training and a validation loader."
    def __init__(self, train, valid): self.train,self.valid = train,valid

class ShuffledDL:
    "A loader that draws a new order from torch's global generator each epoch, as a real one does."
    def __init__(self, x, y, bs): self.x,self.y,self.bs = x,y,bs
    def __len__(self): return -(-len(self.x) // self.bs)
    def __iter__(self):
        idx = torch.randperm(len(self.x))
        for i in range(len(self)):
            j = idx[i*self.bs:(i+1)*self.bs]
            yield self.x[j], self.y[j]
