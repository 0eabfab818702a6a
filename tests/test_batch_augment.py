"""Batched augmentation on tensors: every op equals torchvision's tensor op on each image with the
same parameters, views are a pure function of the generator's seed, and a process's rows of the
global batch get the views a single process gives them."""

import pytest
import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode, autoaugment

from lionfer.data import batch_augment as ba
from lionfer.syncs import count_syncs

SIZE = 20
MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


@pytest.fixture(scope="module")
def images():
    """Smooth shapes plus noise: every op changes them, no image is flat."""
    g = torch.Generator().manual_seed(0)
    ys, xs = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    base = torch.stack([xs * 12, ys * 12, (xs + ys) * 6]).float()
    noise = torch.randint(0, 40, (6, 3, SIZE, SIZE), generator=g)
    return (base[None] + noise).clamp(0, 255).to(torch.uint8)


def one_op(name: str, sign: float, n: int) -> ba.ViewParams:
    ops = torch.full((n, 1), ba.OPS.index(name))
    theta, ratio = ba._op_parameters(ops, torch.full((n, 1), sign, dtype=torch.float64), SIZE)
    zeros = torch.zeros(n, 2, dtype=torch.long)
    return ba.ViewParams(zeros, torch.zeros(n, dtype=torch.bool), ops, theta, ratio, zeros)


@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize("name", ba.OPS)
def test_each_randaugment_op_equals_torchvisions_tensor_op(images, name, sign):
    got = ba.rand_augment(images, one_op(name, sign, len(images)))
    signed = name in ba.GEOMETRIC or name in ba.BLENDS
    value = ba.magnitude(name, SIZE) * (sign if signed else 1.0)
    for image, mine in zip(images, got, strict=True):
        want = autoaugment._apply_op(image, name, value, InterpolationMode.NEAREST, None)
        assert torch.equal(mine, want), name


def test_two_rounds_apply_each_images_own_ops_in_order(images):
    params = ba.draw_params(len(images), SIZE, True, torch.Generator().manual_seed(3))
    got = ba.rand_augment(images, params)
    for i, image in enumerate(images):
        for k in range(params.ops.shape[1]):
            name = ba.OPS[int(params.ops[i, k])]
            value = float(params.ratio[i, k, 0]) - 1.0 if name in ba.BLENDS else None
            if value is None:
                single = one_op(name, 1.0, 1)
                single.theta = params.theta[i : i + 1, k : k + 1]
                image = ba.rand_augment(image[None], single)[0]
            else:
                image = autoaugment._apply_op(image, name, value, InterpolationMode.NEAREST, None)
        assert torch.equal(got[i], image), i


def test_crop_flip_normalise_and_cutout_match_the_cpu_transforms(images):
    params = ba.draw_params(len(images), SIZE, True, torch.Generator().manual_seed(1))
    params.cutout[0] = torch.tensor([6, 1, 18])  # a square clipped by the border
    weak = ba.weak_view(images, params, MEAN, STD)
    strong_tail = ba.cutout(weak, params)
    pad = ba.crop_padding(SIZE)
    for i, image in enumerate(images):
        top, left = (int(v) for v in params.crop[i])
        want = TF.crop(TF.pad(image, [pad]), top, left, SIZE, SIZE)
        if params.flip[i]:
            want = TF.hflip(want)
        want = TF.normalize(want.float().div(255), MEAN, STD)
        assert torch.equal(weak[i], want), i
        side, cy, cx = (int(v) for v in params.cutout[i])
        y0, x0 = max(0, cy - side // 2), max(0, cx - side // 2)
        want[:, y0 : cy - side // 2 + side, x0 : cx - side // 2 + side] = 0.0
        assert torch.equal(strong_tail[i], want), i
    assert (strong_tail[0, :, 0:4, 15:20] == 0).all() and (strong_tail[0, :, 5:, :] != 0).any()


def test_views_are_a_function_of_the_seed_and_of_the_global_batch(images):
    def views(seed, x=images, **kwargs):
        generator = torch.Generator().manual_seed(seed)
        return ba.views_of(x, ("weak", "strong"), MEAN, STD, generator, **kwargs)

    first, again, other = views(5), views(5), views(6)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[1], other[1])
    assert first[0].shape == first[1].shape == (6, 3, SIZE, SIZE)
    assert first[0].dtype == torch.float32
    rows = views(5, images[2:4], batch_size=6, first=2)  # one process's share
    assert all(torch.equal(a[2:4], b) for a, b in zip(first, rows, strict=True))


def test_params_travel_as_one_tensor_and_nothing_is_read_back(images):
    params = ba.draw_params(len(images), SIZE, True, torch.Generator().manual_seed(2))
    with count_syncs() as counted:
        ba.strong_view(images, params, MEAN, STD)
    assert counted.count == 0, str(counted)
    # A GPU gets them as one packed tensor: every field survives the round trip.
    unpacked = ba.ViewParams.unpack(params.pack(), params.ops.shape[1])
    for name in ba.ViewParams.__dataclass_fields__:
        assert torch.equal(getattr(unpacked, name), getattr(params, name)), name
