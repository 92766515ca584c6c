"""Latent volume → per-phase voxel probabilities, and three-axis refinement (MicroLad §4-5).

Decoding (ours, improving paper Eq. 35): for each axis, the latent volume is linearly
interpolated along that axis to voxel resolution (cell-centred: voxel k sits at latent
coordinate (k + 0.5)/f − 0.5), so every voxel slice gets its own latent slice; each is
decoded to per-phase probabilities and the three axes' probabilities are averaged.
Refinement: K times, encode → decode every voxel slice along each axis (the encoder sees
the one-hot of the current argmax, as in training) and average the axes' probabilities.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from microlad.reconstruct._chunks import crop_2d, map_chunks, pad_2d, slices_per_call
from microlad.reconstruct._orient import to_slices
from microlad.reconstruct.options import SliceOptions


def interpolate_along(latent: torch.Tensor, axis: int, factor: int, *, periodic: bool = False) -> torch.Tensor:
    """Linearly up-sample (C, d, h, w) by ``factor`` along spatial ``axis`` (0, 1, 2), cell-centred."""
    if factor == 1:
        return latent
    dim = axis + 1
    x = latent.movedim(dim, -1)  # (..., n)
    shape = x.shape
    flat = x.reshape(1, -1, shape[-1])
    if periodic:  # wrap one cell each side so the end voxels interpolate across the border
        flat = torch.cat([flat[..., -1:], flat, flat[..., :1]], dim=-1)
        up = F.interpolate(flat, scale_factor=factor, mode="linear", align_corners=False)
        up = up[..., factor:-factor]
    else:
        up = F.interpolate(flat, scale_factor=factor, mode="linear", align_corners=False)
    return up.reshape(*shape[:-1], shape[-1] * factor).movedim(-1, dim)


def decode_slices(vae, latents: torch.Tensor, options: SliceOptions = SliceOptions()) -> torch.Tensor:
    """Raw latent slices (N, C, h, w) → per-phase probabilities (N, P, h·f, w·f), chunked."""
    f = vae.config.downsample_factor
    padded, pads = pad_2d(latents, margin=2 if options.periodic else 0, periodic=options.periodic)
    chunk = slices_per_call(vae, padded.shape[-1] * padded.shape[-2] * f * f, latents.device, options.memory_budget)
    probs = map_chunks(lambda z: torch.softmax(vae.decode(z), dim=1), padded, chunk)
    return crop_2d(probs, pads, scale=f)


def encode_slices(vae, onehot: torch.Tensor, options: SliceOptions = SliceOptions()) -> torch.Tensor:
    """One-hot slices (N, P, H, W) → raw posterior-mean latents (N, C, H/f, W/f), chunked."""
    f = vae.config.downsample_factor
    margin = 2 * f if options.periodic else 0
    padded, pads = pad_2d(onehot, margin=margin, periodic=options.periodic)
    chunk = slices_per_call(vae, padded.shape[-1] * padded.shape[-2], onehot.device, options.memory_budget)
    z = map_chunks(lambda x: vae.encode(x)[0], padded, chunk)
    return crop_2d(z, tuple(p // f for p in pads))


@torch.inference_mode()
def decode_volume(vae, latent: torch.Tensor, options: SliceOptions | None = None, **keywords) -> torch.Tensor:
    """Raw latent volume (C, d, h, w) → averaged per-phase probabilities (P, d·f, h·f, w·f).

    ``options`` (:class:`SliceOptions`; its fields may also be given as keywords:
    ``periodic``, ``memory_budget``, ``progress``) say how the slice batches run.
    """
    opts = SliceOptions.merge(options, **keywords)
    f = vae.config.downsample_factor
    c, d, h, w = latent.shape
    probs = torch.zeros((vae.config.n_phases, d * f, h * f, w * f), device=latent.device)
    for axis in tqdm(range(3), desc="decode", unit="axis", disable=not opts.progress, leave=False):
        up = interpolate_along(latent, axis, f, periodic=opts.periodic)
        out = decode_slices(vae, to_slices(up, axis), opts)
        to_slices(probs, axis).add_(out)  # to_slices is a view: accumulates in (P, Z, Y, X)
    return probs.div_(3.0)


@torch.inference_mode()
def refine_volume(vae, probs: torch.Tensor, refine: int, options: SliceOptions | None = None, **keywords) -> torch.Tensor:
    """Three-axis refinement: ``refine`` passes of (encode → decode along z, y, x; average).

    ``probs``: (P, Z, Y, X) per-phase probabilities; returns the same shape. ``options``
    as for :func:`decode_volume`.
    """
    opts = SliceOptions.merge(options, **keywords)
    p = vae.config.n_phases
    bar = tqdm(total=refine * 3, desc="refine", unit="axis", disable=not opts.progress, leave=False)
    for _ in range(refine):
        onehot = F.one_hot(probs.argmax(0), p).permute(3, 0, 1, 2).to(probs.dtype)
        new = torch.zeros_like(probs)
        for axis in range(3):
            z = encode_slices(vae, to_slices(onehot, axis), opts)
            to_slices(new, axis).add_(decode_slices(vae, z, opts))
            bar.update()
        probs = new.div_(3.0)
    bar.close()
    return probs


@torch.inference_mode()
def match_fractions(
    probs: torch.Tensor,
    target: torch.Tensor,
    *,
    iterations: int = 200,
    tolerance: float = 1e-3,
    max_voxels: int = 1 << 20,
) -> torch.Tensor:
    """Shift per-phase log-probabilities so the argmax volume has the ``target`` fractions.

    A per-phase bias b (P,) is added to ``log(probs)``; each phase's bias moves towards
    its target with its own adaptive step (grown ×1.5 while the sign of
    ``target − realised`` stays, halved when it flips), so both small corrections and
    large ones (a minority phase whose probabilities sit far below ½) converge. The bias
    is fitted on a fixed random subset of at most ``max_voxels`` voxels (fractions there
    are within ~5e-4 of the whole volume's) and applied to all. Only the decision
    thresholds move — voxels change phase only where the phases were the closest calls —
    so this is a volume-fraction control, not a change of the learned structure.
    Returns the re-normalised probabilities (P, Z, Y, X).
    """
    p = probs.shape[0]
    target = torch.as_tensor(target, dtype=probs.dtype, device=probs.device).clamp_min(1e-6)
    target = target / target.sum()
    logp = probs.clamp_min(1e-12).log()
    flat = logp.reshape(p, -1)
    if flat.shape[1] > max_voxels:  # same subset every call: deterministic
        idx = torch.randperm(flat.shape[1], generator=torch.Generator().manual_seed(0))[:max_voxels]
        flat = flat[:, idx.to(flat.device)]
    bias = torch.zeros(p, dtype=probs.dtype, device=probs.device)
    step = torch.full_like(bias, 0.5)
    last = torch.zeros_like(bias)
    best, best_err = bias.clone(), float("inf")
    for _ in range(iterations):
        lab = (flat + bias[:, None]).argmax(0)
        frac = torch.bincount(lab, minlength=p).to(probs.dtype) / lab.numel()
        err = float((frac - target).abs().max())
        if err < best_err:
            best, best_err = bias.clone(), err
        if err < tolerance:
            break
        sign = torch.sign(target - frac)
        step = torch.where(sign * last > 0, step * 1.5, torch.where(sign * last < 0, step * 0.5, step))
        bias = bias + sign * step
        last = sign
    return torch.softmax(logp + best.view(-1, 1, 1, 1), dim=0)
