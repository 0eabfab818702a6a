"""The weak and strong views of lionfer.data.transforms as batched tensor ops on uint8 images
(B, 3, S, S), on any device: the GPU when data.augment_on=device, so the CPU only gathers cached
images.

Random parameters are drawn per sample on the CPU from a generator the caller seeds (per stream
and batch), then travel to the device as one small tensor: a batch's views are a pure function of
its seed (resume stays exact) and of nothing device-specific. Each op is torchvision's tensor
implementation of the same op, batched with per-sample parameters: RandAugment's 14 ops at
magnitude 10 of 31 (2 per image), random crop with zero padding, horizontal flip, normalisation,
then Cutout. The views follow the CPU path's distribution; pixels differ where PIL and torch
compute differently, and RandAugment sees the image at data.image_size (the CPU path: the file).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from lionfer.data.transforms import RANDAUGMENT_MAGNITUDE, RANDAUGMENT_OPS

OPS = (
    "Identity",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Rotate",
    "Brightness",
    "Color",
    "Contrast",
    "Sharpness",
    "Posterize",
    "Solarize",
    "AutoContrast",
    "Equalize",
)
GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
BLENDS = ("Brightness", "Color", "Contrast", "Sharpness")
BINS = 31  # torchvision's RandAugment magnitude bins
CUTOUT_FRACTION = 0.5


def magnitude(op: str, size: int, level: int = RANDAUGMENT_MAGNITUDE) -> float:
    """torchvision RandAugment's magnitude of `op` at `level` of 31 bins, for S×S images."""
    fraction = level / (BINS - 1)
    return {
        "ShearX": 0.3 * fraction,
        "ShearY": 0.3 * fraction,
        "TranslateX": 150.0 / 331.0 * size * fraction,
        "TranslateY": 150.0 / 331.0 * size * fraction,
        "Rotate": 30.0 * fraction,
        "Brightness": 0.9 * fraction,
        "Color": 0.9 * fraction,
        "Contrast": 0.9 * fraction,
        "Sharpness": 0.9 * fraction,
        "Posterize": float(int(8 - round(level / ((BINS - 1) / 4)))),
        "Solarize": 255.0 - 255.0 * fraction,
    }.get(op, 0.0)


def crop_padding(size: int) -> int:
    """The weak view's translation: zero padding of 8 px at 224, scaled (as transforms.weak)."""
    return max(1, round(size * 8 / 224))


@dataclass
class ViewParams:
    """Per-sample parameters of one view of a batch, on the CPU (or moved with .to())."""

    crop: Tensor  # (B, 2) long: top, left offsets of the crop in the padded image
    flip: Tensor  # (B,) bool
    ops: Tensor  # (B, N) long: RandAugment op indices into OPS (N = 0 for weak)
    theta: Tensor  # (B, N, 2, 3) float32: inverse affine of each geometric op (else identity)
    ratio: Tensor  # (B, N, 2) float32: blend weights (r, 1 − r) of the blending ops
    cutout: Tensor  # (B, 3) long: side, centre y, centre x (side 0: none)

    def to(self, device: torch.device) -> ViewParams:
        """To the device in one pinned, non-blocking transfer (no host sync)."""
        if torch.device(device).type == "cpu":
            return self
        packed = self.pack().pin_memory().to(device, non_blocking=True)
        return ViewParams.unpack(packed, self.ops.shape[1])

    def pack(self) -> Tensor:
        """Every field in one (B, K) float64 tensor (the integers are small: exact)."""
        ints = torch.cat([self.crop, self.flip[:, None].long(), self.ops, self.cutout], dim=1)
        floats = torch.cat([self.theta.flatten(1), self.ratio.flatten(1)], dim=1)
        return torch.cat([ints.double(), floats.double()], dim=1)

    @staticmethod
    def unpack(packed: Tensor, rounds: int) -> ViewParams:
        b, n = len(packed), rounds
        ints, floats = packed[:, : 6 + n].long(), packed[:, 6 + n :].float()
        return ViewParams(
            ints[:, :2],
            ints[:, 2].bool(),
            ints[:, 3 : 3 + n],
            floats[:, : 6 * n].view(b, n, 2, 3),
            floats[:, 6 * n :].view(b, n, 2),
            ints[:, 3 + n : 6 + n],
        )


def draw_params(n: int, size: int, strong: bool, generator: torch.Generator) -> ViewParams:
    """Random parameters of n views: crop and flip (weak), and RandAugment ops, signs and Cutout
    (strong), from `generator` (on the CPU)."""
    pad = crop_padding(size)
    crop = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    rounds = RANDAUGMENT_OPS if strong else 0
    ops = torch.randint(len(OPS), (n, rounds), generator=generator)
    signs = torch.where(torch.rand(n, rounds, generator=generator) < 0.5, -1.0, 1.0).double()
    theta, ratio = _op_parameters(ops, signs, size)
    cutout = torch.zeros(n, 3, dtype=torch.long)
    if strong:
        side = torch.round(torch.rand(n, generator=generator, dtype=torch.float64) * 0.5 * size)
        centre = torch.randint(size, (n, 2), generator=generator)
        cutout = torch.cat([side.long()[:, None], centre], dim=1)
    return ViewParams(crop, flip, ops, theta, ratio, cutout)


def _op_parameters(ops: Tensor, signs: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """(inverse affine matrices (B, N, 2, 3), blend weights (B, N, 2)) of the drawn ops, computed
    in float64 as torchvision does in Python, then float32."""
    names = [OPS[i] for i in range(len(OPS))]
    values = torch.tensor([magnitude(name, size) for name in names], dtype=torch.float64)
    signed = torch.tensor([name in GEOMETRIC or name in BLENDS for name in names])
    m = values[ops] * torch.where(signed[ops], signs, 1.0)  # (B, N)
    zero = torch.zeros_like(m)
    is_op = {name: ops == names.index(name) for name in names}
    shear_x = torch.where(is_op["ShearX"], torch.rad2deg(torch.atan(m)), zero)
    shear_y = torch.where(is_op["ShearY"], torch.rad2deg(torch.atan(m)), zero)
    translate_x = torch.where(is_op["TranslateX"], torch.trunc(m), zero)  # int(magnitude)
    translate_y = torch.where(is_op["TranslateY"], torch.trunc(m), zero)
    angle = torch.where(is_op["Rotate"], -m, zero)  # F.rotate passes −angle
    shear = is_op["ShearX"] | is_op["ShearY"]  # sheared about the top-left corner
    centre = torch.where(shear, -size * 0.5, zero)
    theta = inverse_affine(centre, angle, translate_x, translate_y, shear_x, shear_y)
    blend = torch.zeros_like(m)
    for name in BLENDS:
        blend = torch.where(is_op[name], 1.0 + m, blend)
    ratio = torch.stack([blend, 1.0 - blend], dim=-1)
    return theta.float(), ratio.float()


def inverse_affine(centre, angle, tx, ty, shear_x, shear_y) -> Tensor:
    """torchvision's _get_inverse_affine_matrix (scale 1), elementwise: (..., 2, 3) float64.
    `centre` is the same for x and y (the image is square), in pixels from the image centre."""
    rot, sx, sy = torch.deg2rad(angle), torch.deg2rad(shear_x), torch.deg2rad(shear_y)
    a = torch.cos(rot - sy) / torch.cos(sy)
    b = -torch.cos(rot - sy) * torch.tan(sx) / torch.cos(sy) - torch.sin(rot)
    c = torch.sin(rot - sy) / torch.cos(sy)
    d = -torch.sin(rot - sy) * torch.tan(sx) / torch.cos(sy) + torch.cos(rot)
    m0, m1, m3, m4 = d, -b, -c, a
    m2 = m0 * (-centre - tx) + m1 * (-centre - ty) + centre
    m5 = m3 * (-centre - tx) + m4 * (-centre - ty) + centre
    return torch.stack([torch.stack([m0, m1, m2], -1), torch.stack([m3, m4, m5], -1)], -2)


# ---- the ops: uint8 (B, 3, S, S) in, uint8 out, per-sample parameters ----


def affine_nearest(x: Tensor, theta: Tensor) -> Tensor:
    """torchvision F_t.affine/rotate with nearest interpolation and zero fill, one inverse
    matrix (2, 3) per image, in pixels about the image centre."""
    b, _, h, w = x.shape
    xs = torch.linspace(-w * 0.5 + 0.5, w * 0.5 - 0.5, steps=w, device=x.device)
    ys = torch.linspace(-h * 0.5 + 0.5, h * 0.5 - 0.5, steps=h, device=x.device)
    base = torch.stack(
        [xs.expand(h, w), ys[:, None].expand(h, w), torch.ones_like(xs).expand(h, w)], -1
    )
    scale = torch.full((2,), 0.5 * w, device=x.device)  # made on the device: no copy
    scale[1] = 0.5 * h
    grid = base.view(1, h * w, 3).expand(b, -1, -1).bmm(theta.transpose(1, 2) / scale)
    out = F.grid_sample(
        x.float(), grid.view(b, h, w, 2), mode="nearest", padding_mode="zeros", align_corners=False
    )
    return torch.round(out).to(torch.uint8)


def _blend(x: Tensor, other: Tensor, ratio: Tensor) -> Tensor:
    """(r·x + (1 − r)·other) clamped to [0, 255] and truncated to uint8; ratio (B, 2)."""
    r, rest = ratio[:, 0, None, None, None], ratio[:, 1, None, None, None]
    return (r * x + rest * other).clamp(0, 255).to(torch.uint8)


def grayscale(x: Tensor) -> Tensor:
    """(B, 1, S, S) uint8, torchvision's rgb_to_grayscale weights."""
    r, g, b = x.unbind(dim=1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).to(x.dtype)[:, None]


def sharpness_blur(x: Tensor) -> Tensor:
    """torchvision's smoothing for adjust_sharpness: a 3×3 kernel (centre 5), border kept."""
    kernel = torch.ones(3, 3, device=x.device)
    kernel[1, 1] = 5.0
    kernel = (kernel / kernel.sum()).expand(x.shape[1], 1, 3, 3)
    inner = torch.round(F.conv2d(x.float(), kernel, groups=x.shape[1])).to(torch.uint8)
    out = x.clone()
    out[..., 1:-1, 1:-1] = inner
    return out


def autocontrast(x: Tensor) -> Tensor:
    low = x.amin(dim=(-2, -1), keepdim=True).float()
    high = x.amax(dim=(-2, -1), keepdim=True).float()
    scale = 255.0 / (high - low)
    flat = ~torch.isfinite(scale)
    low, scale = torch.where(flat, 0.0, low), torch.where(flat, 1.0, scale)
    return ((x - low) * scale).clamp(0, 255).to(torch.uint8)


def equalize(x: Tensor) -> Tensor:
    """torchvision's equalize, every channel of every image at once (no host sync)."""
    b, c, h, w = x.shape
    pixels = x.reshape(b * c, h * w).long()
    hist = torch.zeros(b * c, 256, dtype=torch.long, device=x.device)
    hist.scatter_add_(1, pixels, torch.ones_like(pixels))
    levels = torch.arange(256, device=x.device)
    last = torch.where(hist > 0, levels, -1).amax(dim=1, keepdim=True)  # the last level used
    step = (h * w - hist.gather(1, last)) // 255  # (BC, 1)
    lut = (hist.cumsum(dim=1) + step // 2) // step.clamp_min(1)
    lut = torch.cat([torch.zeros_like(lut[:, :1]), lut[:, :-1]], dim=1).clamp(0, 255)
    equalized = lut.gather(1, pixels)
    out = torch.where(step == 0, pixels, equalized)
    return out.to(torch.uint8).view(b, c, h, w)


def _chosen(op: Tensor, *names: str) -> Tensor:
    """(B, 1, 1, 1) true where the image's op is one of `names`."""
    picked = torch.zeros_like(op, dtype=torch.bool)
    for name in names:
        picked = picked | (op == OPS.index(name))
    return picked[:, None, None, None]


def _colour_ops(x: Tensor, ratio: Tensor) -> dict[str, Tensor]:
    """Every colour op of RandAugment applied to every image (blend weights per image)."""
    size, gray = x.shape[-1], grayscale(x)
    return {
        "Brightness": _blend(x, torch.zeros_like(x), ratio),
        "Color": _blend(x, gray, ratio),
        "Contrast": _blend(x, gray.float().mean(dim=(-3, -2, -1), keepdim=True), ratio),
        "Sharpness": _blend(x, sharpness_blur(x), ratio),
        "Posterize": x & -int(2 ** (8 - int(magnitude("Posterize", size)))),
        "Solarize": torch.where(x >= magnitude("Solarize", size), 255 - x, x),
        "AutoContrast": autocontrast(x),
        "Equalize": equalize(x),
    }


def rand_augment(x: Tensor, params: ViewParams) -> Tensor:
    """RandAugment's rounds: every op is computed for the batch and each image keeps its own."""
    for k in range(params.ops.shape[1]):
        op = params.ops[:, k]
        out = torch.where(_chosen(op, *GEOMETRIC), affine_nearest(x, params.theta[:, k]), x)
        for name, value in _colour_ops(x, params.ratio[:, k]).items():
            out = torch.where(_chosen(op, name), value, out)
        x = out
    return x


def crop_and_flip(x: Tensor, params: ViewParams) -> Tensor:
    """RandomCrop(S, padding) with zero padding at the drawn offsets, then the drawn flips."""
    b, c, h, w = x.shape
    pad = crop_padding(w)
    padded = F.pad(x, [pad, pad, pad, pad])
    rows = (params.crop[:, 0, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (params.crop[:, 1, None] + torch.arange(w, device=x.device))[:, None, None, :]
    out = padded.gather(2, rows.expand(b, c, h, w + 2 * pad)).gather(3, cols.expand(b, c, h, w))
    return torch.where(params.flip[:, None, None, None], out.flip(-1), out)


def normalise(x: Tensor, mean, std) -> Tensor:
    """ToTensor + Normalize: (x / 255 − mean) / std, float32. mean and std: 3 numbers, or
    tensors already on x's device (a stream makes them once: no copy per batch)."""
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    return (x.float().div(255) - mean_t) / std_t


def cutout(x: Tensor, params: ViewParams) -> Tensor:
    """transforms.Cutout per image: zero a square of the drawn side at the drawn centre."""
    side, cy, cx = params.cutout.unbind(dim=1)
    y0, x0 = (cy - side // 2).clamp_min(0), (cx - side // 2).clamp_min(0)
    y1, x1 = cy - side // 2 + side, cx - side // 2 + side
    ys = torch.arange(x.shape[-2], device=x.device)[None, :, None]
    xs = torch.arange(x.shape[-1], device=x.device)[None, None, :]
    inside = (ys >= y0[:, None, None]) & (ys < y1[:, None, None])
    inside = inside & (xs >= x0[:, None, None]) & (xs < x1[:, None, None])
    return x.masked_fill(inside[:, None], 0.0)


def weak_view(x: Tensor, params: ViewParams, mean, std) -> Tensor:
    """transforms.weak on uint8 images already at the training size."""
    return normalise(crop_and_flip(x, params), mean, std)


def strong_view(x: Tensor, params: ViewParams, mean, std) -> Tensor:
    """transforms.strong: RandAugment, the weak view, then Cutout."""
    return cutout(weak_view(rand_augment(x, params), params, mean, std), params)


VIEWS = {"weak": (weak_view, False), "strong": (strong_view, True)}


def views_of(
    x: Tensor,
    names: Sequence[str],
    mean: Sequence[float],
    std: Sequence[float],
    generator: torch.Generator,
    batch_size: int | None = None,
    first: int = 0,
) -> list[Tensor]:
    """One float view per name of the uint8 images x (b, 3, S, S). The parameters are drawn for
    a whole batch of `batch_size` images (default b) from `generator`, and x holds its images
    first … first + b − 1: a process of a multi-process run draws the global batch and keeps its
    rows, so an image gets the same view whatever the number of processes."""
    batch_size = len(x) if batch_size is None else batch_size
    rows = slice(first, first + len(x))
    out = []
    for name in names:
        view, strong = VIEWS[name]
        params = draw_params(batch_size, x.shape[-1], strong, generator)
        params = ViewParams(*(getattr(params, f)[rows] for f in ViewParams.__dataclass_fields__))
        out.append(view(x, params.to(x.device), mean, std))
    return out
