"""A dispatch mode that spots reads of tensor values back to the host (GPU syncs) and copies from the
host to the device, for the tests."""

import traceback

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class HostReads(TorchDispatchMode):
    """Counts the operators that read a tensor's value back to the host: on a GPU each one waits for
    every queued kernel. `scalars` counts item()/bool() apart, because on CPU it also counts reads of
    host-side tensors that are no sync on a GPU (kornia's Gaussian checks its CPU sigma that way).

    `uploads` lists the host-to-device copies, each with the source line that asked for it: a CPU tensor
    copied to another device, and a tensor made from Python data (torch.tensor, new_tensor, as_tensor
    of a number: aten.lift_fresh), which on a GPU is made on the host and copied over, blocking. On CPU
    the second kind is all a test can see, and it includes tensors meant to stay on the host (kornia's
    Gaussian sigma again): hence the source line."""

    SYNCS = {torch.ops.aten.nonzero.default, torch.ops.aten.masked_select.default,
             torch.ops.aten._linalg_check_errors.default}
    LIFTS = {torch.ops.aten.lift_fresh.default, torch.ops.aten.lift_fresh_copy.default}
    COPIES = {torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default}

    def __init__(self):
        super().__init__()
        self.syncs, self.scalars, self.uploads = [], 0, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.SYNCS:
            self.syncs.append(str(func))
        self.scalars += func is torch.ops.aten._local_scalar_dense.default
        if func in self.LIFTS:
            self.uploads.append(f"{func} at {_caller()}")
        elif func in self.COPIES:
            source = args[1] if func is torch.ops.aten.copy_.default else args[0]
            target = args[0].device if func is torch.ops.aten.copy_.default else kwargs.get("device") or source.device
            if source.device.type == "cpu" and torch.device(target).type != "cpu":
                self.uploads.append(f"{func} to {target} at {_caller()}")
            elif source.device.type != "cpu" and torch.device(target).type == "cpu":
                self.syncs.append(f"{func} to the host at {_caller()}")
        return func(*args, **kwargs)


def _caller() -> str:
    """The innermost source line outside torch and this file: the code that asked for the operator."""
    for frame in reversed(traceback.extract_stack()):
        if "/torch/" not in frame.filename and frame.filename != __file__:
            return f"{frame.filename}:{frame.lineno}"
    return "?"
