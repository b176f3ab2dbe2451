"""Compilation and memory layout (acceleration.py): the settings are respected, checkpoints move between
compiled and eager runs in both directions, and on the CPU a compiled `tiny` run gives eager's losses,
compiles nothing after its first iterations and resumes exactly. The last two compile with inductor
(a C++ compiler): 4.6 minutes on one thread with a cold inductor cache (shared 2-core machine), hence `slow`."""

import io

import pytest
import torch
import torch.utils._triton
from torch._dynamo.utils import counters

import jokr_engine.perceptual
from jokr_engine import acceleration
from jokr_engine.acceleration import Acceleration
from jokr_engine.bench import count_work, synthetic_clip
from jokr_engine.checkpoint import host_copy
from jokr_engine.config import Config, preset_config
from jokr_engine.errors import JokrError
from jokr_engine.events import Emitter
from jokr_engine.generator import shape_generator
from jokr_engine.job import Job
from jokr_engine.lpips_net import LPIPS
from jokr_engine.train import Trainer

CPU, CUDA = torch.device("cpu"), torch.device("cuda")  # a device object needs no GPU


def _trainer(folder, *settings, device=CPU) -> Trainer:
    config = preset_config("tiny").override(list(settings))
    clips = {"A": synthetic_clip(8, config.image_size, 1), "B": synthetic_clip(8, config.image_size, 2)}
    return Trainer(Job(folder), config, clips, device, Emitter(stream=io.StringIO(), terminal=io.StringIO()))


def _compiled(module: torch.nn.Module) -> bool:
    return module._compiled_call_impl is not None  # what nn.Module.compile sets


def test_auto_turns_layout_compile_and_cudnn_benchmark_on_for_cuda_only(monkeypatch):
    monkeypatch.setattr(acceleration, "compile_unavailable", lambda device: None)
    tiny = preset_config("tiny")
    assert Acceleration.for_device(tiny, CPU) == Acceleration(channels_last=False, compile=False,
                                                              cudnn_benchmark=False)
    assert Acceleration.for_device(tiny, CUDA) == Acceleration(channels_last=True, compile=True, cudnn_benchmark=True)
    forced = tiny.override(["channels_last=on", "compile=on"])
    assert Acceleration.for_device(forced, CPU) == Acceleration(True, True, False)
    off = tiny.override(["channels_last=off", "compile=off", "cudnn_benchmark=off"])
    assert Acceleration.for_device(off, CUDA) == Acceleration(False, False, False)


def test_auto_compiles_only_where_it_can_and_on_says_why_it_cannot(monkeypatch):
    monkeypatch.setattr(acceleration, "compile_unavailable", lambda device: "Triton is not installed")
    resolved = Acceleration.for_device(preset_config("tiny"), CUDA)
    assert not resolved.compile and resolved.channels_last
    assert resolved.describe() == "channels_last on, compile off (Triton is not installed), cudnn.benchmark"
    with pytest.raises(JokrError, match="compile=on: torch.compile cannot run on cuda here: Triton is not installed"):
        Acceleration.for_device(preset_config("tiny").override(["compile=on"]), CUDA)


def test_compiling_on_cuda_needs_triton_and_a_c_compiler(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.utils._triton, "has_triton", lambda: False)
    assert acceleration.compile_unavailable(CUDA) == "Triton is not installed"
    monkeypatch.setattr(torch.utils._triton, "has_triton", lambda: True)
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing to run there
    assert "no C compiler" in acceleration.compile_unavailable(CUDA)
    (tmp_path / "gcc").write_text("#!/bin/sh\n")
    (tmp_path / "gcc").chmod(0o755)
    assert acceleration.compile_unavailable(CUDA) is None


def test_jobs_written_with_a_boolean_channels_last_still_load():
    old = {**Config().to_dict(), "channels_last": True}
    del old["compile"], old["cudnn_benchmark"]
    assert Config.from_dict(old).channels_last == "auto"
    assert Config.from_dict({**old, "channels_last": False}).channels_last == "off"


def test_trainer_compiles_e_g_and_the_refiners_and_lpips_in_place(tmp_path, monkeypatch):
    # LPIPS-VGG with random weights: what is checked is where it runs, not its values.
    monkeypatch.setattr(jokr_engine.perceptual, "build_lpips",
                        lambda net, device: LPIPS(net).requires_grad_(False).eval().to(device))
    trainer = _trainer(tmp_path / "compiled", "compile=on", "channels_last=on", "perceptual=lpips")
    networks = dict(trainer.models.named_children())
    assert {name for name, module in networks.items() if _compiled(module)} == {"E", "G", "R_A", "R_B"}
    assert _compiled(trainer.perceptual.network)
    for module in (trainer.models, trainer.perceptual.network):
        convolutions = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1)]
        assert convolutions and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convolutions)
    eager = _trainer(tmp_path / "eager", "perceptual=lpips")
    assert not any(_compiled(m) for m in [*eager.models.children(), eager.perceptual.network])
    assert eager.models.G.model[1].weight.is_contiguous()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_trainer_sets_cudnn_benchmark_as_configured(tmp_path):
    _trainer(tmp_path / "off", "cudnn_benchmark=off", device=CUDA)
    assert torch.backends.cudnn.benchmark is False
    trainer = _trainer(tmp_path / "on", device=CUDA)
    assert torch.backends.cudnn.benchmark is True
    assert trainer.acceleration == Acceleration(channels_last=True, compile=True, cudnn_benchmark=True)


def test_checkpoints_move_between_compiled_and_eager_runs(tmp_path):
    """nn.Module.compile keeps the state-dict keys; torch.compile(module) would prefix them with
    `_orig_mod.`, and such a checkpoint would not load into an eager run."""
    compiled = _trainer(tmp_path / "compiled", "compile=on", "channels_last=on", "seed=1")
    eager = _trainer(tmp_path / "eager", "seed=2")
    compiled_state, compiled_meta = compiled.state("test")
    eager_state, eager_meta = eager.state("test")
    assert compiled_state.keys() == eager_state.keys()
    assert not [k for k in compiled_state if "_orig_mod" in k]
    saved = host_copy(compiled_state)  # as written to disk: contiguous copies
    eager.restore(saved, compiled_meta)
    assert all(torch.equal(v, saved[k]) for k, v in eager.state("test")[0].items() if k.startswith("model."))
    with torch.no_grad():
        for parameter in eager.models.parameters():
            parameter.add_(1)
    saved = host_copy(eager.state("test")[0])
    compiled.restore(saved, eager_meta)
    assert all(torch.equal(v, saved[k]) for k, v in compiled.state("test")[0].items() if k.startswith("model."))
    assert compiled.models.G.model[1].weight.is_contiguous(memory_format=torch.channels_last)  # layout kept


def test_layout_conversions_are_counted_per_resnet_forward():
    """Channels-last against InstanceNorm: each InstanceNorm copies its input back to NCHW (a clone) and
    the next convolution converts it to channels-last again; in NCHW nothing converts."""
    config = preset_config("paper")
    generator = shape_generator(config)
    norms = sum(isinstance(m, torch.nn.InstanceNorm2d) for m in generator.modules())
    maps = torch.rand(1, config.num_keypoints, 32, 32)
    with torch.no_grad():
        nchw = count_work(lambda: generator(maps))
        generator.to(memory_format=torch.channels_last)
        maps = maps.contiguous(memory_format=torch.channels_last)
        channels_last = count_work(lambda: generator(maps))
    assert norms == 23 and nchw["layout_conversions"] == 0
    assert channels_last["layout_conversions"] == 2 * norms
    assert channels_last["operators"] == nchw["operators"] + norms  # the clones


def test_bench_counts_layout_conversions_only_in_channels_last(tmp_path):
    from jokr_engine.bench import count_schedule

    nchw = count_schedule("tiny", ["channels_last=off"], "cpu")
    last = count_schedule("tiny", ["channels_last=on"], "cpu")
    assert nchw["acceleration"].startswith("channels_last off") and last["acceleration"].startswith("channels_last on")
    for step in (1, 2):
        assert nchw[f"step{step}_layout_conversions_per_it"] == 0
        assert last[f"step{step}_layout_conversions_per_it"] > 20
        assert last[f"step{step}_gflop_per_it"] == nchw[f"step{step}_gflop_per_it"]


def _graphs() -> int:
    return counters["stats"]["unique_graphs"]


@pytest.mark.slow
def test_compiled_tiny_iterations_match_eager_and_compile_only_once(tmp_path):
    """Each step starts from eager's weights, optimiser state and random state. The first iteration
    differs by float rounding only; the second less than 1 %: Adam's first updates are ±lr wherever a
    gradient is not zero, so rounding-sized differences in tiny gradients grow there."""
    # Without dropout: inductor draws its random numbers otherwise than eager does; the augmentation
    # (eager, outside the networks) then draws the same samples in both runs.
    eager = _trainer(tmp_path / "eager", "gen_dropout=0")
    compiled = _trainer(tmp_path / "compiled", "gen_dropout=0", "compile=on")
    for step in (1, 2):
        eager.step = step
        tensors, meta = eager.state("test")
        compiled.restore(host_copy(tensors), meta)  # also sets the random state back
        runs = {}
        for name, trainer in (("compiled", compiled), ("eager", eager)):
            trainer.set_phase()
            torch.set_rng_state(tensors["rng.cpu"])
            runs[name] = [trainer.step1_iteration() if step == 1 else trainer.step2_iteration() for _ in range(2)]
        for iteration, tolerance in enumerate((1e-4, 1e-2)):
            e, c = runs["eager"][iteration], runs["compiled"][iteration]
            for key in e:
                assert torch.allclose(c[key], e[key], rtol=tolerance, atol=1e-6), (step, iteration, key, c[key], e[key])
        graphs = _graphs()
        compiled.step1_iteration() if step == 1 else compiled.step2_iteration()
        compiled.preview()
        assert _graphs() == graphs, f"step {step}: a third iteration or a preview compiled again"
    assert 0 < _graphs() <= 8
    assert counters["graph_break"] == {} and not [k for k in counters["unimplemented"] if "recompile" in k.lower()]


@pytest.mark.slow
def test_compiled_run_resumes_exactly(tmp_path):
    """Inductor draws G's and R's dropout masks from the generator whose state the checkpoint holds."""
    first = _trainer(tmp_path / "first", "compile=on")
    first.step = 2
    first.set_phase()
    first.step2_iteration()
    tensors, meta = first.state("test")
    saved = host_copy(tensors)
    expected = [first.step2_iteration() for _ in range(2)]
    second = _trainer(tmp_path / "second", "compile=on")
    second.restore(saved, meta)
    second.set_phase()
    resumed = [second.step2_iteration() for _ in range(2)]
    for e, r in zip(expected, resumed):
        assert all(torch.equal(e[key], r[key]) for key in e), (e, r)
    for (name, a), b in zip(first.models.named_parameters(), second.models.parameters()):
        assert torch.equal(a, b), name


def test_bench_compares_only_the_acceleration_settings():
    from jokr_engine.bench import compare_settings

    with pytest.raises(JokrError, match="can compare channels_last, compile, cudnn_benchmark"):
        compare_settings("tiny", [], "cpu", 1, ["channels_last", "precision"])
