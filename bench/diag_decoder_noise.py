"""Does a decoder trained on perturbed latents render L-MPDD's off-manifold latents more
like the images? (issue #11 experiment; writes a model directory, no results file)

Fine-tunes only the decoder of MODEL (encoder, latent statistics and U-Net unchanged, so the
prior's latent space is the same) for ``--steps`` steps on training patches, decoding the
encoder's posterior mean plus Gaussian noise of ``--noise`` × the latent scale per channel
(0: a control that fine-tunes without noise), with the training cross-entropy (phase
class weights as in training). The result is written to OUT (config.json copied, new
vae.safetensors) for the fine-scale bench and ``diag_plane_roughness.py``.

Usage: python bench/diag_decoder_noise.py MODEL IMAGE OUT [--noise 0.3] [--steps 400] [--lr 1e-4]
"""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from microlad.bundled import resolve_model
from microlad.data import PatchSampler
from microlad.io import read_image
from microlad.model import VAE_WEIGHTS_NAME, load_model
from microlad.models.losses import phase_class_weights


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir")
    ap.add_argument("image")
    ap.add_argument("out", type=Path)
    ap.add_argument("--noise", type=float, default=0.3)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    src = Path(resolve_model(args.model_dir))
    model = load_model(src)
    vae = model.vae
    seg = read_image(args.image)
    labels = seg.labels
    p = model.n_phases
    sampler = PatchSampler([labels], patch=model.patch_size)
    gen = torch.Generator().manual_seed(args.seed)
    weights = phase_class_weights(torch.as_tensor([(labels == k).mean() for k in range(p)], dtype=torch.float32))
    opt = torch.optim.Adam(vae.decoder.parameters(), lr=args.lr)
    scale = vae.latent_scale[None, :, None, None]
    vae.encoder.eval()
    vae.decoder.train()
    t0 = time.time()
    for step in range(args.steps):
        x = sampler.sample(args.batch, gen)
        with torch.no_grad():
            mean, _ = vae.encode(x)
        z = mean + args.noise * scale * torch.randn(mean.shape, generator=gen)
        logits = vae.decode(z)
        target = x.argmax(1)
        loss = torch.nn.functional.cross_entropy(logits, target, weight=weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step}: CE {loss.item():.4f} ({time.time() - t0:.0f} s)", flush=True)
    vae.eval()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "unet_ema.safetensors"):
        shutil.copy(src / name, args.out / name)
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, str(args.out / VAE_WEIGHTS_NAME))
    print(f"wrote {args.out} ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
