"Shared test set-up: headless plots, no waiting on the unreachable HF hub, a real-data marker."
import os
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('MPLBACKEND', 'Agg')
from pathlib import Path
import pytest

DEBIAN_DATA = Path('/usr/share/datasets/fashion-mnist')

def have_real_data()->bool:
    d = Path(os.environ.get('MINIAI_DATA') or DEBIAN_DATA)
    return (d/'train-images-idx3-ubyte.gz').exists() or (d/'train-images-idx3-ubyte').exists()

real_data = pytest.mark.skipif(not have_real_data(), reason='Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)')

# `make test` (the everyday loop, under 6 minutes on 2 cores) leaves out the tests marked slow: end-to-end runs of the
# real command or of several processes, each of about 10 s or more (kill -9, signals through a launcher, torchrun,
# whole presets), and every notebook in a fresh kernel (make test runs their cells through nbdev-test). `make slowtest`
# runs them; CI (`.ci/run`) runs both.
slow = pytest.mark.slow

def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: an end-to-end run of ~10 s or more; run by `make slowtest` and CI, not `make test`')

@pytest.fixture(autouse=True)
def _threads_unchanged(request):
    """A test that changes torch's thread count must put it back: the next test in the same process would otherwise
    train on other threads, and a thread guard acting mid-fit there breaks its bit-exact resume checks."""
    import sys
    torch = sys.modules.get('torch')
    before = torch.get_num_threads() if torch else None
    yield
    torch = sys.modules.get('torch')
    if before is not None and torch.get_num_threads() != before:
        n = torch.get_num_threads(); torch.set_num_threads(before)
        pytest.fail(f"{request.node.nodeid} left torch with {n} threads instead of {before}", pytrace=False)
