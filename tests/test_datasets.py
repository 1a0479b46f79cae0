"Tests of miniai.datasets: IDX reading, the tensor and DatasetDict caches, MemoryDL, and the real data set."
import os
os.environ.setdefault('HF_HUB_OFFLINE', '1')  # the hub is unreachable in CI: fail at once, not after timeouts
os.environ.setdefault('HF_DATASETS_OFFLINE', '1')
import gzip, hashlib, struct, time, warnings
from pathlib import Path

import pytest
import torch

import miniai.datasets as mds
from miniai.datasets import (CLASS_NAMES, DataLoaders, FashionMNISTError, MemoryDL, fashion_mnist_tensors,
                             get_dls, load_fashion_mnist, read_idx)


# ---------------------------------------------------------------- helpers
def idx_bytes(t: torch.Tensor) -> bytes:
    "The IDX encoding of uint8 tensor `t` (1-d or 3-d)."
    magic = {1: 0x801, 3: 0x803}[t.ndim]
    return struct.pack(f'>I{t.ndim}I', magic, *t.shape) + t.contiguous().numpy().tobytes()

def write_idx(path: Path, t: torch.Tensor, gz=True):
    data = idx_bytes(t)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path

def fake_data(folder: Path, n_train=20, n_test=10, bad_label=None):
    "Tiny Fashion-MNIST in `folder`: images `i` filled with value i, labels i % 10."
    folder.mkdir(parents=True, exist_ok=True)
    for (xs, ys), n in zip(mds.FILES.values(), (n_train, n_test)):
        x = torch.arange(n, dtype=torch.uint8).view(n, 1, 1).expand(n, 28, 28)
        y = (torch.arange(n) % 10).to(torch.uint8)
        if bad_label is not None: y[-1] = bad_label
        write_idx(folder/f'{xs}.gz', x)
        write_idx(folder/f'{ys}.gz', y)
    return folder

@pytest.fixture
def fake_env(tmp_path, monkeypatch):
    "MINIAI_DATA pointing to tiny fake IDX files and MINIAI_CACHE to an empty folder."
    data, cache = fake_data(tmp_path/'data'), tmp_path/'cache'
    monkeypatch.setenv('MINIAI_DATA', str(data))
    monkeypatch.setenv('MINIAI_CACHE', str(cache))
    return data, cache

def tensor_caches(cache: Path): return sorted(cache.glob('fashion_mnist-*.pt'))


# ---------------------------------------------------------------- read_idx
@pytest.mark.parametrize('gz', [True, False])
def test_read_idx_good(tmp_path, gz):
    x = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
    y = torch.tensor([0, 9, 3, 3, 1], dtype=torch.uint8)
    sfx = '.gz' if gz else ''
    rx = read_idx(write_idx(tmp_path/f'im-idx3-ubyte{sfx}', x, gz))
    ry = read_idx(write_idx(tmp_path/f'lb-idx1-ubyte{sfx}', y, gz))
    assert rx.dtype == torch.uint8 and rx.shape == (5, 28, 28) and torch.equal(rx, x)
    assert ry.dtype == torch.uint8 and ry.shape == (5,) and torch.equal(ry, y)

def check_error(f, name):
    with pytest.raises(FashionMNISTError) as e: f()
    msg = str(e.value)
    assert name in msg
    assert 'apt-get install dataset-fashion-mnist' in msg and 'MINIAI_DATA' in msg
    assert isinstance(e.value, RuntimeError)
    return msg

def test_read_idx_truncated(tmp_path):
    data = idx_bytes(torch.zeros(4, 28, 28, dtype=torch.uint8))
    (tmp_path/'short-idx3-ubyte.gz').write_bytes(gzip.compress(data[:-100]))
    (tmp_path/'short-idx3-ubyte').write_bytes(data[:-100])
    (tmp_path/'long-idx3-ubyte').write_bytes(data + b'\0')
    for f in ('short-idx3-ubyte.gz', 'short-idx3-ubyte', 'long-idx3-ubyte'):
        assert 'truncated or corrupt' in check_error(lambda: read_idx(tmp_path/f), f)

def test_read_idx_truncated_gzip_stream(tmp_path):
    gz = gzip.compress(idx_bytes(torch.zeros(40, 28, 28, dtype=torch.uint8)))
    (tmp_path/'cut-idx3-ubyte.gz').write_bytes(gz[:len(gz)//2])
    assert 'gzip' in check_error(lambda: read_idx(tmp_path/'cut-idx3-ubyte.gz'), 'cut-idx3-ubyte.gz')

def test_read_idx_bad_magic_and_header(tmp_path):
    (tmp_path/'magic-idx3-ubyte').write_bytes(struct.pack('>IIII', 0x0D03, 1, 28, 28) + bytes(784))
    assert 'magic' in check_error(lambda: read_idx(tmp_path/'magic-idx3-ubyte'), 'magic-idx3-ubyte')
    (tmp_path/'tiny-idx1-ubyte').write_bytes(b'\0\0')
    check_error(lambda: read_idx(tmp_path/'tiny-idx1-ubyte'), 'tiny-idx1-ubyte')
    (tmp_path/'hdr-idx3-ubyte').write_bytes(struct.pack('>II', 0x803, 1))
    check_error(lambda: read_idx(tmp_path/'hdr-idx3-ubyte'), 'hdr-idx3-ubyte')

def test_read_idx_not_gzip(tmp_path):
    (tmp_path/'garbage-idx1-ubyte.gz').write_bytes(b'this is not a gzip file' * 10)
    assert 'gzip' in check_error(lambda: read_idx(tmp_path/'garbage-idx1-ubyte.gz'), 'garbage-idx1-ubyte.gz')

def test_read_idx_missing(tmp_path):
    assert 'not found' in check_error(lambda: read_idx(tmp_path/'nope-idx3-ubyte.gz'), 'nope-idx3-ubyte.gz')
    check_error(lambda: read_idx(tmp_path), tmp_path.name)  # a folder is not a file


# ---------------------------------------------------------------- fashion_mnist_tensors and its cache
def test_tensors_from_fake_folder(fake_env):
    data, cache = fake_env
    d = fashion_mnist_tensors()
    assert set(d) == {'train', 'test'}
    (xt, yt), (xv, yv) = d['train'], d['test']
    assert xt.shape == (20, 28, 28) and xv.shape == (10, 28, 28)
    assert xt.dtype == torch.uint8 and yt.dtype == torch.int64 and yv.dtype == torch.int64
    assert torch.equal(yt, torch.arange(20) % 10) and int(xt[7, 3, 4]) == 7
    assert len(tensor_caches(cache)) == 1

def test_tensors_plain_files_and_path_arg(tmp_path, monkeypatch):
    "Uncompressed files work, and `path` wins over MINIAI_DATA."
    monkeypatch.setenv('MINIAI_CACHE', str(tmp_path/'cache'))
    monkeypatch.setenv('MINIAI_DATA', str(tmp_path/'nowhere'))
    folder = tmp_path/'plain'; folder.mkdir()
    for (xs, ys), n in zip(mds.FILES.values(), (6, 4)):
        write_idx(folder/xs, torch.zeros(n, 28, 28, dtype=torch.uint8), gz=False)
        write_idx(folder/ys, torch.ones(n, dtype=torch.uint8), gz=False)
    d = fashion_mnist_tensors(folder)
    assert d['train'][0].shape == (6, 28, 28) and d['test'][1].tolist() == [1]*4

def test_cache_is_used_second_time(fake_env, monkeypatch):
    d1 = fashion_mnist_tensors()
    def boom(*a, **k): raise AssertionError('read_idx called although the cache exists')
    monkeypatch.setattr(mds, 'read_idx', boom)
    d2 = fashion_mnist_tensors()
    for k in ('train', 'test'):
        assert all(torch.equal(a, b) for a, b in zip(d1[k], d2[k]))

def test_cache_keyed_on_source(fake_env, tmp_path, monkeypatch):
    data, cache = fake_env
    fashion_mnist_tensors()
    other = fake_data(tmp_path/'other', n_train=30, n_test=5)
    monkeypatch.setenv('MINIAI_DATA', str(other))
    assert fashion_mnist_tensors()['train'][0].shape == (30, 28, 28)
    assert len(tensor_caches(cache)) == 2

@pytest.mark.parametrize('garbage', [b'garbage' * 100, b''])
def test_corrupt_cache_rebuilt(fake_env, garbage):
    data, cache = fake_env
    fashion_mnist_tensors()
    [f] = tensor_caches(cache)
    f.write_bytes(garbage)
    with pytest.warns(UserWarning, match='corrupt'):
        d = fashion_mnist_tensors()
    assert d['train'][0].shape == (20, 28, 28)
    [f2] = tensor_caches(cache)
    assert f2 == f and torch.load(f, weights_only=True)['test'][0].shape == (10, 28, 28)

def test_wrong_content_cache_rebuilt(fake_env):
    "A cache that loads but has the wrong shapes/dtypes is not trusted."
    data, cache = fake_env
    fashion_mnist_tensors()
    [f] = tensor_caches(cache)
    torch.save({'train': (torch.zeros(3, 5), torch.zeros(3)), 'test': 1}, f)
    with pytest.warns(UserWarning, match='corrupt'):
        d = fashion_mnist_tensors()
    assert d['train'][0].shape == (20, 28, 28) and d['train'][1].dtype == torch.int64

def test_bad_label_raises(tmp_path, monkeypatch):
    monkeypatch.setenv('MINIAI_DATA', str(fake_data(tmp_path/'data', bad_label=12)))
    monkeypatch.setenv('MINIAI_CACHE', str(tmp_path/'cache'))
    with pytest.raises(FashionMNISTError, match='0..9') as e: fashion_mnist_tensors()
    assert 'train-labels-idx1-ubyte.gz' in str(e.value)
    assert not tensor_caches(tmp_path/'cache')

def test_mismatched_counts_and_missing_file(tmp_path, monkeypatch):
    data = fake_data(tmp_path/'data')
    monkeypatch.setenv('MINIAI_DATA', str(data))
    monkeypatch.setenv('MINIAI_CACHE', str(tmp_path/'cache'))
    write_idx(data/'t10k-labels-idx1-ubyte.gz', torch.zeros(3, dtype=torch.uint8))
    with pytest.raises(FashionMNISTError, match='3 labels for 10 images'): fashion_mnist_tensors()
    (data/'t10k-labels-idx1-ubyte.gz').unlink()
    with pytest.raises(FashionMNISTError, match='t10k-labels-idx1-ubyte.gz'): fashion_mnist_tensors()

def test_atomic_write_keeps_old_file(tmp_path, monkeypatch):
    f = tmp_path/'c.pt'
    torch.save({'old': torch.arange(3)}, f)
    before = f.read_bytes()
    def failing_save(obj, fh, *a, **k):
        fh.write(b'half a file')
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(torch, 'save', failing_save)
    with pytest.raises(OSError): mds._atomic_save({'new': torch.zeros(5)}, f)
    assert f.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ['c.pt']  # no temp file left behind

def test_failed_cache_write_still_returns_data(fake_env, monkeypatch):
    data, cache = fake_env
    def failing_save(*a, **k): raise OSError(28, 'No space left on device')
    monkeypatch.setattr(torch, 'save', failing_save)
    with pytest.warns(UserWarning, match='could not write the cache'):
        d = fashion_mnist_tensors()
    assert d['train'][0].shape == (20, 28, 28)
    assert list(cache.iterdir()) == []  # neither a cache nor a temp file

def test_hub_fallback_fails_clearly_offline(tmp_path, monkeypatch):
    monkeypatch.delenv('MINIAI_DATA', raising=False)
    monkeypatch.setenv('MINIAI_CACHE', str(tmp_path/'cache'))
    monkeypatch.setattr(mds, 'DEBIAN_DIR', tmp_path/'no-debian')
    import datasets
    def offline(*a, **k): raise ConnectionError('offline')
    monkeypatch.setattr(datasets, 'load_dataset', offline)
    for f in (fashion_mnist_tensors, load_fashion_mnist):
        with pytest.raises(FashionMNISTError, match='HF hub') as e: f()
        assert 'dataset-fashion-mnist' in str(e.value) and 'MINIAI_DATA' in str(e.value)


# ---------------------------------------------------------------- load_fashion_mnist
def test_load_fashion_mnist_fake(fake_env, monkeypatch):
    from datasets import ClassLabel, DatasetDict, Image
    data, cache = fake_env
    dd = load_fashion_mnist()
    assert isinstance(dd, DatasetDict) and list(dd) == ['train', 'test']
    assert dd['train'].num_rows == 20 and dd['test'].num_rows == 10
    feats = dd['train'].features
    assert list(feats) == ['image', 'label']
    assert isinstance(feats['image'], Image) and isinstance(feats['label'], ClassLabel)
    assert feats['label'].names == CLASS_NAMES
    row = dd['train'][7]
    assert row['image'].size == (28, 28) and row['image'].mode == 'L' and row['image'].getpixel((3, 4)) == 7
    assert row['label'] == 7
    [hf] = cache.glob('fashion_mnist-*-hf')
    assert not list(cache.glob('.*'))  # no temp folders left
    # second time: from the cache, without reading any IDX file
    monkeypatch.setattr(mds, 'read_idx', lambda *a, **k: pytest.fail('read_idx called'))
    dd2 = load_fashion_mnist()
    assert dd2['test'].num_rows == 10 and dd2['train'][7]['label'] == 7

def test_load_fashion_mnist_corrupt_cache_rebuilt(fake_env):
    data, cache = fake_env
    load_fashion_mnist()
    [hf] = cache.glob('fashion_mnist-*-hf')
    for f in hf.rglob('*.arrow'): f.write_bytes(b'garbage')
    with pytest.warns(UserWarning, match='corrupt'):
        dd = load_fashion_mnist()
    assert dd['train'].num_rows == 20
    assert load_fashion_mnist()['train'][3]['label'] == 3  # the rebuilt cache loads


# ---------------------------------------------------------------- DataLoaders, collate_dict
def test_dataloaders_from_dd(fake_env):
    import numpy as np
    tds = load_fashion_mnist().with_transform(mds.inplace(
        lambda b: b.update(image=[torch.from_numpy(np.array(o, dtype=np.float32))[None] for o in b['image']])))
    dls = DataLoaders.from_dd(tds, 8)
    xb, yb = next(iter(dls.valid))
    assert xb.shape == (8, 1, 28, 28) and xb.dtype == torch.float32 and yb.tolist() == list(range(8))
    assert len(dls.train) == 3
    b = next(iter(DataLoaders.from_dd(tds, 4, as_tuple=False).train))
    assert set(b) == {'image', 'label'}
    dls = DataLoaders([1], [2], [3])
    assert dls.train == [1] and dls.valid == [2]
    with pytest.raises(TypeError, match=r'needs a training and a validation loader, got 1 loader'): DataLoaders([1])


# ---------------------------------------------------------------- MemoryDL
def numbered(n):
    "Images whose pixels all equal their row number, labels row % 10."
    return torch.arange(n, dtype=torch.uint8).view(n, 1, 1).expand(n, 28, 28).contiguous(), torch.arange(n) % 10

def rows(xb): return (xb[:, 0, 0, 0]*255).round().long()

def test_memorydl_shapes_len_last_batch():
    x, y = numbered(100)
    dl = MemoryDL(x, y.to(torch.uint8), bs=32)
    assert len(dl) == 4
    bs = list(dl)
    assert [len(b[0]) for b in bs] == [32, 32, 32, 4]
    xb, yb = bs[0]
    assert xb.shape == (32, 1, 28, 28) and xb.dtype == torch.float32 and yb.dtype == torch.int64
    assert torch.equal(torch.cat([rows(b[0]) for b in bs]), torch.arange(100))  # in order without shuffle
    assert torch.equal(torch.cat([b[1] for b in bs]), y)
    dl = MemoryDL(x, y, bs=32, drop_last=True)
    assert len(dl) == 3 and [len(b[0]) for b in dl] == [32]*3
    assert len(MemoryDL(x, y, bs=50)) == 2 and len(MemoryDL(x, y, bs=50, drop_last=True)) == 2

def test_memorydl_shuffle_covers_each_row_once():
    x, y = numbered(100)
    dl = MemoryDL(x, y, bs=32, shuffle=True)
    e1 = torch.cat([rows(xb) for xb, _ in dl])
    e2 = torch.cat([rows(xb) for xb, _ in dl])
    assert torch.equal(e1.sort().values, torch.arange(100)) and torch.equal(e2.sort().values, torch.arange(100))
    assert not torch.equal(e1, torch.arange(100)) and not torch.equal(e1, e2)
    ys = torch.cat([yb for _, yb in dl])
    xs = torch.cat([rows(xb) for xb, _ in dl])
    torch.manual_seed(0); ys = torch.cat([yb for _, yb in dl])
    torch.manual_seed(0); xs = torch.cat([rows(xb) for xb, _ in dl])
    assert torch.equal(ys, xs % 10)  # labels stay with their images

def test_memorydl_same_seed_same_order():
    x, y = numbered(100)
    dl = MemoryDL(x, y, bs=10, shuffle=True)
    torch.manual_seed(3); a = [rows(xb) for xb, _ in dl]
    torch.manual_seed(3); b = [rows(xb) for xb, _ in dl]
    torch.manual_seed(4); c = [rows(xb) for xb, _ in dl]
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not all(torch.equal(p, q) for p, q in zip(a, c))

def test_memorydl_normalisation():
    x = torch.randint(0, 256, (64, 28, 28), dtype=torch.uint8)
    y = torch.zeros(64, dtype=torch.long)
    xb, _ = next(iter(MemoryDL(x, y, bs=64, mean=0.3, std=0.4)))
    torch.testing.assert_close(xb[:, 0], (x.float()/255 - 0.3)/0.4, rtol=1e-5, atol=1e-5)
    xb, _ = next(iter(MemoryDL(x, y, bs=64)))
    torch.testing.assert_close(xb[:, 0], x.float()/255)

def test_get_dls_fake(fake_env):
    dls = get_dls(bs=8)
    assert len(dls.train) == 3 and len(dls.valid) == 2
    xb, yb = next(iter(dls.valid))
    assert xb.shape == (8, 1, 28, 28)
    torch.testing.assert_close(xb[:, 0, 0, 0], (torch.arange(8)/255 - mds.FASHION_MEAN)/mds.FASHION_STD)
    small = get_dls(bs=4, n_train=10, n_valid=6, normalize=False)
    assert len(small.train) == 3 and len(small.valid) == 2
    assert float(next(iter(small.valid))[0].max()) <= 1.0


# ---------------------------------------------------------------- the real data set
REAL = mds._source(None)  # MINIAI_DATA, else Debian's folder when installed, else None (the hub: not for tests)
needs_real = pytest.mark.skipif(
    REAL is None or not mds._idx_file(REAL, 'train-images-idx3-ubyte').exists(),
    reason='Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist, or set MINIAI_DATA to its folder)')
MD5 = {'train-images-idx3-ubyte': 'f4a8712d7a061bf5bd6d2ca38dc4d50a', 'train-labels-idx1-ubyte': '9018921c3c673c538a1fc5bad174d6f9',
       't10k-images-idx3-ubyte': '8181f5470baa50b63fa0f6fddb340f0a', 't10k-labels-idx1-ubyte': '15d484375f8d13e6eb1aabb0c3f46965'}

@pytest.fixture
def real_env(tmp_path, monkeypatch):
    monkeypatch.setenv('MINIAI_CACHE', str(tmp_path/'cache'))

@needs_real
def test_real_md5():
    if REAL != mds.DEBIAN_DIR: pytest.skip('md5s are those of the Debian/Zalando files')
    for stem, md5 in MD5.items():
        assert hashlib.md5(gzip.decompress((REAL/f'{stem}.gz').read_bytes())).hexdigest() == md5, stem

@needs_real
def test_real_tensors_and_get_dls(real_env):
    d = fashion_mnist_tensors()
    (xt, yt), (xv, yv) = d['train'], d['test']
    assert xt.shape == (60000, 28, 28) and xv.shape == (10000, 28, 28) and len(yt) == 60000 and len(yv) == 10000
    assert int(yt.min()) == 0 and int(yt.max()) == 9 and int(yv.min()) == 0 and int(yv.max()) == 9
    assert abs(xt.float().div(255).mean().item() - mds.FASHION_MEAN) < 1e-3
    xb, yb = next(iter(get_dls().train))
    assert xb.shape == (1024, 1, 28, 28) and xb.dtype == torch.float32 and yb.dtype == torch.int64
    assert abs(xb.mean().item()) < 0.1 and abs(xb.std().item() - 1) < 0.1

def test_memorydl_restores_threads():
    "Batches are made with one thread; the consumer of each batch sees the original thread count."
    x, y = numbered(100)
    n = torch.get_num_threads()
    for _ in MemoryDL(x, y, bs=10, shuffle=True): assert torch.get_num_threads() == n
    assert torch.get_num_threads() == n


# ---------------------------------------------------------------- the cache is verified (issue 8)
def same(d1, d2): return all(torch.equal(a, b) for k in mds.FILES for a, b in zip(d1[k], d2[k]))

def test_flipped_bytes_in_cache_rebuilt(fake_env):
    "64 bytes flipped inside the cached image tensor (the file still loads) are caught by the checksum."
    data, cache = fake_env
    good = fashion_mnist_tensors()
    [f] = tensor_caches(cache)
    raw = bytearray(f.read_bytes())
    i = raw.find(bytes([7])*784)  # training image 7 is 784 bytes of 7
    assert i > 0
    raw[i:i+64] = bytes(b ^ 0xff for b in raw[i:i+64])
    f.write_bytes(bytes(raw))
    assert int(torch.load(f, weights_only=True)['train'][0][7, 0, 0]) == 7 ^ 0xff  # the flip is really served by torch.load
    with pytest.warns(UserWarning, match='checksum'):
        d = fashion_mnist_tensors()
    assert same(d, good)
    assert same(mds._load_cache(f), good)  # rebuilt

def test_right_structure_wrong_count_rebuilt(fake_env):
    "A well-formed cache with a valid checksum but 3 images, where the source has 20, is not trusted."
    data, cache = fake_env
    good = fashion_mnist_tensors()
    [f] = tensor_caches(cache)
    small = {k: (x[:3], y[:3]) for k, (x, y) in good.items()}
    torch.save(mds._with_meta(small), f)
    with pytest.warns(UserWarning, match='the source has'):
        d = fashion_mnist_tensors()
    assert same(d, good)

def test_cache_meta_must_match(fake_env):
    "Counts stored in the cache must be those of its tensors, and an old-format cache (no meta) is rebuilt."
    data, cache = fake_env
    good = fashion_mnist_tensors()
    [f] = tensor_caches(cache)
    obj = mds._with_meta(good); obj['meta']['counts'] = {'train': 3, 'test': 10}
    torch.save(obj, f)
    with pytest.warns(UserWarning, match='was written with'): fashion_mnist_tensors()
    torch.save(dict(good), f)  # what version 1 wrote
    with pytest.warns(UserWarning, match='not a miniai cache'): assert same(fashion_mnist_tensors(), good)

def test_cache_path_is_a_folder(fake_env, recwarn):
    "No IsADirectoryError: the folder is left alone (with what is in it) and the data read from the source."
    data, cache = fake_env
    f = cache/f'fashion_mnist-{mds._cache_key(mds._source())}.pt'
    f.mkdir(parents=True); (f/'mine.txt').write_text('user data')
    with pytest.warns(UserWarning, match='is a folder'):
        d = fashion_mnist_tensors()
    assert d['train'][0].shape == (20, 28, 28)
    assert (f/'mine.txt').read_text() == 'user data'
    assert not any('deleting' in str(w.message) for w in recwarn)

@pytest.mark.parametrize('n_train,n_test', [(0, 10), (20, 0)])
def test_zero_images_refused(tmp_path, monkeypatch, n_train, n_test):
    monkeypatch.setenv('MINIAI_DATA', str(fake_data(tmp_path/'data', n_train=n_train, n_test=n_test)))
    monkeypatch.setenv('MINIAI_CACHE', str(tmp_path/'cache'))
    with pytest.raises(FashionMNISTError, match='0 images') as e: fashion_mnist_tensors()
    assert ('train-images' if n_train == 0 else 't10k-images') in str(e.value)
    assert not tensor_caches(tmp_path/'cache')

def test_zero_image_cache_refused(fake_env):
    data, cache = fake_env
    good = fashion_mnist_tensors()
    [f] = tensor_caches(cache)
    torch.save(mds._with_meta({k: (x[:0], y[:0]) for k, (x, y) in good.items()}), f)
    with pytest.warns(UserWarning, match='0 images'): assert same(fashion_mnist_tensors(), good)

@needs_real
def test_real_cache_checksum_is_cheap(real_env):
    "The checksum of the full data set (55 MB of tensors) stays a small part of a warm load."
    d = fashion_mnist_tensors()
    t0 = time.perf_counter(); dig = mds._digest(d); dt = time.perf_counter() - t0
    assert dt < 0.5, dt
    assert mds._source_counts(REAL) == {'train': 60000, 'test': 10000}
    assert same(fashion_mnist_tensors(), d) and len(dig) == 64


# ---------------------------------------------------------------- the split of issue 18: miniai.batches
def test_batch_names_live_in_batches_and_keep_their_old_import_path(fake_env):
    """Batches (the with_transform path, MemoryDL, one_thread) and the image helpers are defined in miniai.batches,
    which imports no other miniai module; miniai.datasets re-exports them (the same objects) without exporting them."""
    import miniai.batches as mb
    assert set(mb.__all__) == {'show_image', 'subplots', 'get_grid', 'show_images', 'inplace', 'collate_dict',
                               'DataLoaders', 'one_thread', 'MemoryDL'}
    for nm in mb.__all__:
        assert getattr(mds, nm) is getattr(mb, nm) and nm not in mds.__all__, nm
        assert getattr(mb, nm).__module__ == 'miniai.batches', nm
    assert 'from .' not in Path(mb.__file__).read_text()
    dls = mds.get_dls(bs=4, n_train=8)
    assert type(dls) is mb.DataLoaders and type(dls.train) is mb.MemoryDL and len(dls.train) == 2
