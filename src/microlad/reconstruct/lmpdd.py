"""L-MPDD: latent multi-plane denoising diffusion (MicroLad §4, paper Eqs. 30-35).

A normalized latent volume ``(C, d, h, w)`` starts as N(0, I). At sampler step i it is
read as a batch of 2D latent slices normal to axis ``axis_schedule[i]`` (z → y → x → z …),
the 2D U-Net predicts for the whole batch at once, and one sampler step is applied. No
decoding happens inside the loop. By default every step's clean estimate is
slice-coupled (:mod:`microlad.reconstruct.coupling`, ours) so correlation across slices
matches correlation within them; given ``moments`` it is then shifted per channel to the
mean of the 2D prior's clean estimates at that step (:mod:`microlad.reconstruct.moments`,
ours; ``reconstruct`` does so by default).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from microlad.defaults import RECONSTRUCT_STEPS
from microlad.diffusion import make_sampler
from microlad.reconstruct._chunks import crop_2d, map_chunks, pad_2d, slices_per_call
from microlad.reconstruct._orient import AXIS_NAMES, axis_schedule, from_slices, to_slices
from microlad.reconstruct.coupling import coupled_output
from microlad.reconstruct.moments import match_moments
from microlad.reconstruct.options import SliceOptions


def predict_slices(
    unet: torch.nn.Module,
    volume: torch.Tensor,
    t: int,
    axis: int,
    options: SliceOptions = SliceOptions(),
) -> torch.Tensor:
    """U-Net output for every latent slice normal to ``axis``, back in (C, d, h, w) layout.

    Slices are padded (circularly when ``options.periodic``, by a margin of 2 latent
    cells, and up to the U-Net's size multiple) so any latent size works, then cropped back.
    """
    slices = to_slices(volume, axis)
    margin = 2 if options.periodic else 0
    padded, pads = pad_2d(slices, multiple=unet.config.size_multiple, margin=margin, periodic=options.periodic)
    chunk = slices_per_call(unet, padded.shape[-1] * padded.shape[-2], volume.device, options.memory_budget)

    def run(x: torch.Tensor) -> torch.Tensor:
        tt = torch.full((x.shape[0],), int(t), dtype=torch.long, device=x.device)
        return unet(x, tt)

    out = crop_2d(map_chunks(run, padded, chunk), pads)
    return from_slices(out, axis)


@torch.inference_mode()
def sample_latent_volume(
    unet: torch.nn.Module,
    schedule,
    latent_shape: tuple[int, int, int, int],
    *,
    steps: int = RECONSTRUCT_STEPS,
    sampler: str = "ddim",
    average_axes: bool = False,
    slice_coupling: bool = True,
    coupling_stop: float = 0.0,
    moments: tuple[torch.Tensor | None, torch.Tensor | None] | None = None,
    generator: torch.Generator | None = None,
    options: SliceOptions | None = None,
    on_step: Callable[[int, int, int | None, torch.Tensor, torch.Tensor], bool | None] | None = None,
    init: torch.Tensor | None = None,
    start: float = 1.0,
    **keywords,
) -> torch.Tensor:
    """Run L-MPDD and return the normalized latent volume (C, d, h, w).

    Parameters
    ----------
    latent_shape : (C, d, h, w) = (latent channels, D/f, H/f, W/f).
    steps : sampler steps (each step slices along one axis, cycling z, y, x).
    sampler : a name of :data:`microlad.diffusion.SAMPLER_NAMES`: "ddim"
        (deterministic, default), "dpm2m" (DPM-Solver++(2M), deterministic, second order;
        its multistep update combines clean estimates of consecutive steps, which slice
        along different axes) or "ancestral" (also accepted as "ddpm").
    average_axes : at every step average the model outputs of all three slicing
        orientations (3× the U-Net cost) instead of cycling one axis per step.
    slice_coupling : smooth each step's clean estimate along the slicing axis until its
        cross-slice correlation matches the in-plane one (see
        :mod:`microlad.reconstruct.coupling`); False gives the paper's plain L-MPDD.
    coupling_stop : couple only the steps at timesteps t >= coupling_stop · T (T the
        training timesteps); 0 couples every step.
    moments : per-step, per-channel ``(mean, std)`` of the 2D prior's clean estimates, each
        (steps, C) (:func:`microlad.reconstruct.moments.prior_moments` with the same sampler
        and steps); every step's (coupled) x̂0 is shifted and scaled per channel to them
        (:mod:`microlad.reconstruct.moments`); either entry may be None (that moment is left
        as it is; ``reconstruct`` passes the mean only). None: no matching (the paper's L-MPDD).
    generator : torch.Generator for the initial noise and ancestral noise (seed it).
    on_step : called at every step, before the sampler update, as ``on_step(i, t, axis,
        z, x0)`` with the step index, its timestep, the slicing axis (None with
        ``average_axes``), the latent volume at t and the step's (coupled) clean estimate
        x̂0, both (C, d, h, w); if it returns True, sampling stops there and x̂0 is
        returned (diagnostics: where along the trajectory a property forms).
    options : :class:`SliceOptions` (``periodic``, ``memory_budget``, ``progress``,
        ``device``); its fields may also be given as keywords.
    """
    opts = SliceOptions.merge(options, **keywords)
    device = opts.device if opts.device is not None else "cpu"
    s = make_sampler(schedule, sampler, steps)
    if moments is not None and any(m is not None and m.shape[0] != len(s) for m in moments):
        raise ValueError(f"moments must hold one row per sampler step ({len(s)} steps)")
    z = torch.randn(latent_shape, generator=generator, device=generator.device if generator else device).to(device)
    axes = axis_schedule(len(s))
    timesteps = s.timesteps.tolist()
    first = 0
    if init is not None:
        if tuple(init.shape) != tuple(latent_shape):
            raise ValueError(f"init has shape {tuple(init.shape)}, expected {tuple(latent_shape)}")
        first = next((i for i, t in enumerate(timesteps) if t <= start * schedule.num_train_timesteps), len(timesteps))
        if first < len(timesteps):
            z = schedule.add_noise(init.to(device=z.device, dtype=z.dtype), z, int(timesteps[first]))
        else:
            z = init.to(device=z.device, dtype=z.dtype).clone()
    bar = tqdm(total=len(s) - first, desc="L-MPDD", unit="step", disable=not opts.progress, leave=False)
    for i in range(first, len(timesteps)):
        t = timesteps[i]
        outs = []
        for a in (range(3) if average_axes else [axes[i]]):
            out = predict_slices(unet, z, t, a, opts)
            if slice_coupling and t >= coupling_stop * schedule.num_train_timesteps:
                out = coupled_output(schedule, z, out, t, a, periodic=opts.periodic)
            outs.append(out)
        out = outs[0] if len(outs) == 1 else sum(outs) / 3.0
        x0 = None
        if moments is not None:
            x0 = match_moments(schedule.predict_x0_eps(z, out, t)[0], *(None if m is None else m[i] for m in moments))
            out = schedule.output_for_x0(z, x0, int(t))
        if on_step is not None:
            x0 = schedule.predict_x0_eps(z, out, t)[0] if x0 is None else x0
            if on_step(i, t, None if average_axes else axes[i], z, x0):
                bar.close()
                return x0
        # the sampler update is element-wise, so it is applied in the canonical layout
        z = s.step(out, i, z, generator=generator)
        bar.set_postfix_str(f"axis {'zyx' if average_axes else AXIS_NAMES[axes[i]]}")
        bar.update()
    bar.close()
    return z
