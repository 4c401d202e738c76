"""Statistics of each corruption against the reference table (real chest CT) and the literal loop (synthetic)."""

import random

import numpy as np
import pytest

from monai_genesis.transforms import RandInpaint, RandLocalPixelShuffle, RandNonlinearIntensity, RandOutpaint

from tests.oracle import loop_baseline

from .helpers import changed_stats, chest_ct_cubes, smooth_cube

# section 2.7 of the reference: (fraction changed, its std), (mean absolute change, its std)
REFERENCE = {
    "shuffle": ((0.779, 0.005), (0.031, 0.007)),
    "nonlinear": ((0.999, 0.006), (0.25, 0.18)),
    "inpaint": ((0.055, 0.021), (0.017, 0.007)),
    "outpaint": ((0.68, 0.06), (0.21, 0.03)),
}


def _ours(name):
    t = {
        "shuffle": RandLocalPixelShuffle(prob=1.0),
        "nonlinear": RandNonlinearIntensity(prob=1.0),
        "inpaint": RandInpaint(),
        "outpaint": RandOutpaint(),
    }[name]
    t.set_random_state(0)
    return t


LOOP = {
    "shuffle": lambda x: loop_baseline.local_shuffle(x, prob=1.0),
    "nonlinear": lambda x: loop_baseline.nonlinear(x, prob=1.0),
    "inpaint": loop_baseline.inpaint,
    "outpaint": loop_baseline.outpaint,
}


def _mean_stats(fn, cubes):
    stats = np.array([changed_stats(c, np.asarray(fn(c))) for c in cubes])
    return stats.mean(0)


@pytest.fixture(scope="module")
def ct_cubes(shared_data):
    return chest_ct_cubes(shared_data / "chest_ct" / "chest_ct_0.nii.gz", n=64, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(REFERENCE))
def test_matches_the_reference_table_on_chest_ct(ct_cubes, name):
    assert 0.3 < ct_cubes.mean() < 0.42  # the reference's input mean is 0.352
    fraction, mac = _mean_stats(_ours(name), ct_cubes)
    (ref_fraction, spread_fraction), (ref_mac, spread_mac) = REFERENCE[name]
    assert abs(fraction - ref_fraction) <= spread_fraction, (fraction, ref_fraction)
    assert abs(mac - ref_mac) <= spread_mac, (mac, ref_mac)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(REFERENCE))
def test_matches_the_literal_loop_on_synthetic_cubes(name):
    cubes = [smooth_cube(i, (1, 40, 40, 20)) for i in range(24)]
    random.seed(0)
    np.random.seed(0)
    loop_fraction, loop_mac = _mean_stats(LOOP[name], cubes)
    fraction, mac = _mean_stats(_ours(name), cubes)
    tolerance = {"shuffle": (0.01, 0.003), "nonlinear": (0.01, 0.06), "inpaint": (0.02, 0.01), "outpaint": (0.06, 0.04)}
    assert abs(fraction - loop_fraction) <= tolerance[name][0], (fraction, loop_fraction)
    assert abs(mac - loop_mac) <= tolerance[name][1], (mac, loop_mac)
