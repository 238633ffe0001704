import numpy as np
import pytest
import torch

from skmoby.augment import (
    StrongAugment,
    TabularStrongAugment,
    TabularWeakAugment,
    WeakAugment,
    adjust_hue,
    rgb_to_grayscale,
)
from tests.conftest import small_clf

SHAPES = [(1, 8, 8), (3, 8, 8), (3, 32, 32), (1, 28, 20)]


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("aug", [WeakAugment(), StrongAugment()])
def test_shape_dtype_range(aug, shape):
    x = torch.rand(16, *shape)
    out = aug(x, _gen())
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0 and out.max() <= 1
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("aug", [WeakAugment(), StrongAugment()])
def test_each_sample_gets_its_own_parameters(aug):
    img = torch.rand(1, 3, 16, 16)
    out = aug(img.expand(32, 3, 16, 16).contiguous(), _gen())
    distinct = {tuple(o.flatten().round(decimals=4).tolist()) for o in out}
    assert len(distinct) > 8


@pytest.mark.parametrize(
    "aug", [WeakAugment(), StrongAugment(), TabularWeakAugment(), TabularStrongAugment()]
)
def test_deterministic_under_seed(aug):
    x = (
        torch.rand(8, 3, 16, 16)
        if isinstance(aug, WeakAugment | StrongAugment)
        else torch.randn(8, 5)
    )
    a, b, c = aug(x, _gen(1)), aug(x, _gen(1)), aug(x, _gen(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_weak_is_integer_shift_and_flip_with_zero_padding():
    x = torch.rand(64, 1, 12, 12)
    out = WeakAugment(padding=4)(x, _gen())
    for xi, oi in zip(x[:, 0], out[:, 0], strict=True):
        found = False
        for src in (xi, xi.flip(-1)):
            padded = torch.nn.functional.pad(src, (4, 4, 4, 4))
            for dy in range(9):
                for dx in range(9):
                    if torch.allclose(padded[dy : dy + 12, dx : dx + 12], oi, atol=1e-5):
                        found = True
        assert found
    # Over many samples both flips and several offsets occur.
    assert not torch.allclose(out, x)


@pytest.mark.parametrize(
    "size, pad",
    [
        ((8, 8), 1),
        ((12, 12), 2),
        ((16, 16), 2),
        ((28, 28), 4),
        ((32, 32), 4),
        ((32, 20), 3),
        ((64, 64), 8),
    ],
)
def test_auto_padding_is_one_eighth_of_the_shorter_side(size, pad):
    aug = WeakAugment(flip_p=0.0)
    assert aug.padding_for(*size) == pad
    # The shifts actually drawn stay within that padding and reach it.
    h, w = size
    x = torch.zeros(400, 1, h, w)
    x[:, :, h // 2, w // 2] = 1.0  # one bright pixel; its new position is the shift
    out = aug(x, _gen())
    pos = out[:, 0].flatten(1).argmax(1)
    dy, dx = pos // w - h // 2, pos % w - w // 2
    assert int(dy.abs().max()) == pad and int(dx.abs().max()) == pad


@pytest.mark.parametrize("padding", [-1, 1.5, True, "big"])
def test_weak_rejects_bad_padding(padding):
    with pytest.raises(ValueError, match="padding"):
        WeakAugment(padding=padding)(torch.rand(2, 1, 8, 8), _gen())


def test_weak_takes_a_numpy_integer_padding():
    x = torch.rand(2, 1, 16, 16)
    torch.testing.assert_close(
        WeakAugment(padding=np.int64(2))(x, _gen()), WeakAugment(padding=2)(x, _gen())
    )


@pytest.mark.parametrize(
    ("cls", "params", "match"),
    [
        (WeakAugment, {"flip_p": 2.0}, r"flip_p must be a probability in \[0, 1\]"),
        (StrongAugment, {"jitter_p": 1.5}, "jitter_p must be a probability"),
        (StrongAugment, {"solarize_p": -0.1}, "solarize_p must be a probability"),
        (StrongAugment, {"scale": (1.0, 0.2)}, r"scale must be a pair \(low, high\)"),
        (StrongAugment, {"ratio": (0.0, 1.0)}, "ratio must be a pair"),
        (StrongAugment, {"blur_sigma": 1.0}, "blur_sigma must be a pair"),
        (StrongAugment, {"hue": 0.7}, r"hue must be a number in \[0, 0.5\]"),
        (StrongAugment, {"contrast": -1}, "contrast must be a number >= 0"),
        (StrongAugment, {"brightness": True}, "brightness must be a number"),
        (StrongAugment, {"solarize_threshold": 2}, "solarize_threshold must be a number in"),
        (TabularWeakAugment, {"noise": -0.1}, "noise must be a number >= 0"),
        (TabularStrongAugment, {"mask_p": 1.2}, "mask_p must be a probability"),
    ],
)
def test_bad_augmentation_parameters_are_named(cls, params, match):
    with pytest.raises(ValueError, match=match):
        cls(**params)


def test_strong_jitter_never_inverts_the_image():
    # factors are drawn from [max(0, 1 - s), 1 + s] as in torchvision: a strength above 1
    # must not give negative contrast (an image anti-correlated with its input)
    x = torch.rand(64, 1, 8, 8)
    aug = StrongAugment(
        scale=(1.0, 1.0),
        ratio=(1.0, 1.0),
        flip_p=0.0,
        jitter_p=1.0,
        brightness=0.0,
        contrast=1.5,
        grayscale_p=0.0,
        blur_p=0.0,
        solarize_p=0.0,
    )
    y = aug(x, _gen())
    xc = x.flatten(1) - x.flatten(1).mean(1, keepdim=True)
    yc = y.flatten(1) - y.flatten(1).mean(1, keepdim=True)
    corr = (xc * yc).sum(1) / (xc.norm(dim=1) * yc.norm(dim=1)).clamp_min(1e-12)
    assert (corr > -1e-3).all(), corr.min()


def test_weak_with_no_padding_and_no_flip_is_identity():
    x = torch.rand(4, 3, 9, 9)
    torch.testing.assert_close(WeakAugment(padding=0, flip_p=0.0)(x, _gen()), x)


def test_strong_ops_switched_off_reduce_to_resized_crop_of_whole_image():
    aug = StrongAugment(
        scale=(1.0, 1.0),
        ratio=(1.0, 1.0),
        flip_p=0.0,
        jitter_p=0.0,
        grayscale_p=0.0,
        blur_p=0.0,
        solarize_p=0.0,
    )
    x = torch.rand(4, 3, 10, 10)
    torch.testing.assert_close(aug(x, _gen()), x, atol=1e-5, rtol=0)


def test_crop_maps_are_the_maps_the_strong_view_resamples_with():
    aug = StrongAugment(jitter_p=0.0, grayscale_p=0.0, blur_p=0.0, solarize_p=0.0)
    x = torch.rand(6, 3, 12, 10)
    theta = aug.crop_maps(x, _gen())
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    resampled = torch.nn.functional.grid_sample(x, grid, align_corners=False).clamp(0, 1)
    torch.testing.assert_close(aug(x, _gen()), resampled)


def test_crop_maps_stay_inside_the_image_with_area_and_flip_as_asked():
    x = torch.zeros(500, 1, 32, 32)
    theta = StrongAugment(scale=(0.3, 0.6), flip_p=1.0).crop_maps(x, _gen())
    cw, ch = -theta[:, 0, 0], theta[:, 1, 1]
    assert bool((cw > 0).all()) and bool((ch > 0).all())  # every crop is flipped
    assert bool((cw <= 1).all()) and bool((ch <= 1).all())
    assert bool((theta[:, 0, 2].abs() <= 1 - cw + 1e-6).all())
    assert bool((theta[:, 1, 2].abs() <= 1 - ch + 1e-6).all())
    area = cw * ch
    # no side reaches the image's here, so no clamp shrinks the drawn area
    assert 0.3 - 1e-6 <= float(area.min()) and float(area.max()) <= 0.6 + 1e-6
    assert bool((theta[:, 0, 1] == 0).all()) and bool((theta[:, 1, 0] == 0).all())


def test_solarize_and_grayscale_always_on():
    aug = StrongAugment(
        scale=(1.0, 1.0),
        ratio=(1.0, 1.0),
        flip_p=0.0,
        jitter_p=0.0,
        grayscale_p=1.0,
        blur_p=0.0,
        solarize_p=1.0,
    )
    x = torch.rand(3, 3, 8, 8)
    gray = rgb_to_grayscale(x).expand_as(x)
    want = torch.where(gray >= 0.5, 1 - gray, gray)
    torch.testing.assert_close(aug(x, _gen()), want, atol=1e-5, rtol=0)


def test_blur_preserves_mean_of_constant_image_and_smooths():
    aug = StrongAugment(
        scale=(1.0, 1.0),
        ratio=(1.0, 1.0),
        flip_p=0.0,
        jitter_p=0.0,
        grayscale_p=0.0,
        blur_p=1.0,
        blur_sigma=(1.5, 2.0),
        solarize_p=0.0,
    )
    const = torch.full((2, 1, 16, 16), 0.3)
    torch.testing.assert_close(aug(const, _gen()), const)
    noise = torch.rand(2, 1, 16, 16)
    assert aug(noise, _gen()).std() < 0.5 * noise.std()


def test_hue_rotation_by_thirds_permutes_primaries():
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    green = adjust_hue(red, torch.tensor([1 / 3]))
    blue = adjust_hue(red, torch.tensor([2 / 3]))
    torch.testing.assert_close(green.flatten(), torch.tensor([0.0, 1.0, 0.0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(blue.flatten(), torch.tensor([0.0, 0.0, 1.0]), atol=1e-5, rtol=0)
    x = torch.rand(5, 3, 4, 4)
    torch.testing.assert_close(adjust_hue(x, torch.zeros(5)), x, atol=1e-5, rtol=0)


def test_grayscale_input_stays_grayscale():
    out = StrongAugment(jitter_p=1.0, grayscale_p=1.0)(torch.rand(6, 1, 8, 8), _gen())
    assert out.shape == (6, 1, 8, 8)


@pytest.mark.parametrize(
    ("x", "err", "match"),
    [
        (torch.rand(2, 3, 4, 4), ValueError, "at least 8x8"),
        (torch.rand(2, 2, 8, 8), ValueError, "1 or 3 channels"),
        (torch.rand(2, 8, 8), ValueError, r"\(n, C, H, W\)"),
        (torch.randint(0, 255, (2, 3, 8, 8), dtype=torch.uint8), TypeError, "floating"),
    ],
)
def test_bad_images(x, err, match):
    with pytest.raises(err, match=match):
        StrongAugment()(x)


def test_tabular_augments():
    x = torch.zeros(1000, 4)
    weak = TabularWeakAugment(noise=0.1)(x, _gen())
    assert abs(float(weak.std()) - 0.1) < 0.01
    ones = torch.ones(2000, 5)
    strong = TabularStrongAugment(mask_p=0.3, noise=0.0)(ones, _gen())
    assert np.isclose(float((strong == 0).float().mean()), 0.3, atol=0.03)
    with pytest.raises(ValueError, match=r"\(n, d\)"):
        TabularWeakAugment()(torch.zeros(2, 3, 4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.gpu
def test_runs_on_gpu_with_device_generator():
    x = torch.rand(8, 3, 32, 32, device="cuda")
    g = torch.Generator(device="cuda").manual_seed(0)
    out = StrongAugment()(WeakAugment()(x, g), g)
    assert out.device.type == "cuda" and out.shape == x.shape


@pytest.mark.parametrize("name", ["weak_augment", "strong_augment"])
@pytest.mark.parametrize(
    ("fn", "match"),
    [
        (lambda x: x.flip(-1), r"takes \(x\); an augmentation is called as fn\(batch, generator\)"),
        (lambda x, g: (x, g), "returned a tuple for a batch of shape"),
        (lambda x, g: x[:, :, :4], "returned a tensor of shape"),
    ],
)
def test_an_augmentation_of_the_wrong_form_is_named(digits, name, fn, match):
    X, y = digits
    with pytest.raises(TypeError, match=f"{name}.*{match}"):
        small_clf(max_epochs=1, **{name: fn}).fit(X[:40], y[:40])


def test_a_torchvision_transform_is_refused_with_the_wrapper_to_use(digits):
    v2 = pytest.importorskip("torchvision.transforms.v2")
    X, y = digits
    with pytest.raises(TypeError, match=r"weak_augment returned a tuple.*lambda x, g: t\(x\)"):
        small_clf(max_epochs=1, weak_augment=v2.RandomHorizontalFlip()).fit(X[:40], y[:40])
    flip = v2.RandomHorizontalFlip()
    clf = small_clf(max_epochs=1, weak_augment=lambda x, g: flip(x)).fit(X[:40], y[:40])
    assert np.isfinite(clf.history[-1, "train_loss"])
