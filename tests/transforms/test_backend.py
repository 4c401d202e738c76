"""The backend of the corruptions: chosen once by device, and the torch code of other devices (run here on the CPU)
gives the values of the CPU backends."""

import numpy as np
import pytest
import torch

from monai_genesis.transforms import RandGenesisCorruption
from monai_genesis.transforms.backend import CompiledCPUBackend, TorchBackend, TorchCPUBackend, backend_for
from monai_genesis.transforms.nonlinear import bezier_lut, draw_nonlinear
from monai_genesis.transforms.painting import draw_outpaint_boxes
from monai_genesis.transforms.shuffle import _block_shapes, _tables, draw_blocks, max_block_size

pytest.importorskip("numba")


def test_backend_is_chosen_by_device_and_numba(monkeypatch):
    monkeypatch.setenv("MONAI_GENESIS_NUMBA", "1")
    assert type(backend_for("cpu")) is CompiledCPUBackend and backend_for("cpu") is backend_for(torch.device("cpu"))
    monkeypatch.setenv("MONAI_GENESIS_NUMBA", "0")
    assert type(backend_for("cpu")) is TorchCPUBackend
    meta = backend_for("meta")
    assert type(meta) is TorchBackend and meta.device == torch.device("meta")


def test_the_device_torch_code_gives_the_values_of_the_cpu_backends():
    shape, n = (24, 20, 12), 3
    params = draw_blocks(torch.Generator().manual_seed(0), n, shape, num_blocks=600)
    image = torch.rand(n, *shape)
    keys = torch.randint(2**31 - 1, (params.sizes.shape[0],), generator=torch.Generator().manual_seed(1))
    tables = _tables(shape, max_block_size(shape), torch.device("cpu"))
    lut = bezier_lut(draw_nonlinear(np.random.RandomState(0), n))
    low, high = torch.tensor([-1.0, 0.0, 0.5]), torch.tensor([2.0, 1.0, 3.0])
    boxes = draw_outpaint_boxes(np.random.RandomState(2), n, shape)
    starts, stops, used = (torch.as_tensor(a) for a in (boxes.starts, boxes.stops, boxes.used))
    shapes, rooms, shifts = _block_shapes(shape, max_block_size(shape), torch.device("cpu"))
    index = torch.randint(shapes.shape[0], (50,), generator=torch.Generator().manual_seed(4))
    raw = torch.empty(50, dtype=torch.int64).random_(generator=torch.Generator().manual_seed(5))
    device_code = TorchBackend("cpu")
    for backend in (CompiledCPUBackend(), TorchCPUBackend()):
        block_args = (params.sizes, params.origins, params.item, keys.clone(), tables)
        assert torch.equal(device_code.shuffle(image, *block_args), backend.shuffle(image, *block_args))
        assert torch.equal(device_code.map_lut(image, lut, low, high), backend.map_lut(image, lut, low, high))
        touching = (params.origins, params.sizes, params.item, starts, stops, used)
        assert torch.equal(device_code.blocks_touching(*touching), backend.blocks_touching(*touching))
        placed = (index, raw, shapes, rooms, shifts, 63 // 3, 5, 10)
        for a, b in zip(device_code.place_blocks(*placed), backend.place_blocks(*placed)):
            assert torch.equal(a, b)
        # the noise differs (a generator of the device), what is kept does not
        kept = device_code.box_mask(shape, boxes.starts, boxes.stops, boxes.used)
        paint_args = (image, boxes.starts, boxes.stops, boxes.used, 0.0, 1.0, 3)
        painted = device_code.outpaint(*paint_args)
        assert torch.equal(painted[kept], backend.outpaint(*paint_args)[kept])
        assert torch.equal(painted[kept], image[kept]) and 0.0 <= painted.min() and painted.max() < 1.0


def test_mapping_over_regions_maps_exactly_there():
    image = torch.rand(3, 30, 28, 20)
    lut = bezier_lut(draw_nonlinear(np.random.RandomState(1), 3))
    regions = [None, (np.array([2, 3, 4]), np.array([20, 9, 15])), (np.array([0, 0, 0]), np.array([30, 1, 20]))]
    full = CompiledCPUBackend().map_lut(image, lut)
    bounded = CompiledCPUBackend().map_lut(image, lut, regions=regions)
    assert torch.equal(bounded[0], full[0])
    for i in (1, 2):
        inside = torch.zeros(image.shape[1:], dtype=torch.bool)
        inside[tuple(slice(int(a), int(b)) for a, b in zip(*regions[i]))] = True
        assert torch.equal(bounded[i][inside], full[i][inside]) and torch.equal(bounded[i][~inside], image[i][~inside])
    # the torch code maps everything
    assert torch.equal(TorchBackend("cpu").map_lut(image, lut, regions=regions), full)


def test_draw_and_apply_are_functions_of_their_arguments():
    """draw(R, shape) reads only R and apply(x, draw) only its arguments: the transform keeps no state."""
    corruption = RandGenesisCorruption(flip_rate=0.0, paint_rate=0.0)
    x = torch.rand(2, 1, 32, 32, 16)
    draw = corruption.draw(np.random.RandomState(0), x.shape)
    batch, target = corruption.apply(x, draw)
    assert torch.equal(target, x) and batch.shape == x.shape and not torch.equal(batch, x)
    again, _ = corruption.apply(x, draw)
    assert torch.equal(batch, again)  # apply is a function of the draw: nothing of the transform changes
    assert corruption.last_draw is None


def test_the_pipeline_on_the_device_torch_code(monkeypatch):
    """The whole corruption through the torch code that other devices run: without noise (no painting) the values
    of the CPU backend from the same draw (the curve tables of other devices are float32, within 2e-6); with
    painting, those values wherever no noise is written."""
    from monai_genesis.transforms import backend

    x = torch.rand(3, 2, 32, 28, 16)
    for paint_rate in (0.0, 1.0):
        corruption = RandGenesisCorruption(paint_rate=paint_rate, nonlinear_rate=0.7, local_rate=0.7, flip_rate=0.6)
        draw = corruption.draw(np.random.RandomState(5), x.shape)
        cpu, target = corruption.apply(x, draw)
        with monkeypatch.context() as patch:
            patch.setattr(backend, "_cpu", lambda cls: TorchBackend("cpu"))
            assert type(backend_for("cpu")) is TorchBackend
            device, device_target = corruption.apply(x, draw)
        assert torch.equal(device_target, target) and not torch.equal(cpu, target)
        if paint_rate == 0.0:
            assert torch.allclose(device, cpu, atol=1e-5, rtol=0) and not torch.equal(device, cpu)
            continue
        inpainted, outpainted = draw.inpaint.selected, draw.outpaint.selected
        assert inpainted.any() and outpainted.any()
        items, device_items = cpu.reshape(6, 32, 28, 16), device.reshape(6, 32, 28, 16)
        holes, kept = (
            backend_for("cpu").box_mask((32, 28, 16), d.params.starts, d.params.stops, d.params.used)
            for d in (draw.inpaint, draw.outpaint)
        )
        noise_free = torch.ones(6, 32, 28, 16, dtype=torch.bool)
        noise_free[torch.as_tensor(np.flatnonzero(inpainted))] = ~holes
        noise_free[torch.as_tensor(np.flatnonzero(outpainted))] = kept
        assert torch.allclose(device_items[noise_free], items[noise_free], atol=1e-5, rtol=0)
        assert (device_items[~noise_free] != items[~noise_free]).float().mean() > 0.99
