"""A dispatch mode that spots reads of tensor values back to the host (GPU syncs), for the tests."""

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class HostReads(TorchDispatchMode):
    """Counts the operators that read a tensor's value back to the host: on a GPU each one waits for
    every queued kernel. `scalars` counts item()/bool() apart, because on CPU it also counts reads of
    host-side tensors that are no sync on a GPU (kornia's Gaussian checks its CPU sigma that way)."""

    SYNCS = {torch.ops.aten.nonzero.default, torch.ops.aten.masked_select.default,
             torch.ops.aten._linalg_check_errors.default}

    def __init__(self):
        super().__init__()
        self.syncs, self.scalars = [], 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in self.SYNCS:
            self.syncs.append(str(func))
        self.scalars += func is torch.ops.aten._local_scalar_dense.default
        return func(*args, **(kwargs or {}))
