"""3D reconstruction from a 2D-trained model: L-MPDD (slice coupling, latent-mean
matching), decoding, three-axis refinement, perimeter-calibrated smoothing."""
from microlad.reconstruct._orient import AXIS_NAMES, axis_schedule, from_slices, to_slices
from microlad.reconstruct.api import (
    Reconstruction,
    check_shape,
    latent_mean_moments,
    latents_to_probabilities,
    lmpdd_moments,
    reconstruct,
    refine_probabilities,
    smooth_probabilities,
    training_fractions,
)
from microlad.reconstruct.decode import decode_volume, interpolate_along, refine_volume
from microlad.reconstruct.lmpdd import sample_latent_volume
from microlad.reconstruct.moments import match_moments, prior_moments
from microlad.reconstruct.options import SliceOptions

__all__ = [
    "AXIS_NAMES",
    "Reconstruction",
    "SliceOptions",
    "axis_schedule",
    "check_shape",
    "decode_volume",
    "from_slices",
    "interpolate_along",
    "latent_mean_moments",
    "latents_to_probabilities",
    "lmpdd_moments",
    "match_moments",
    "prior_moments",
    "reconstruct",
    "refine_probabilities",
    "refine_volume",
    "sample_latent_volume",
    "smooth_probabilities",
    "to_slices",
    "training_fractions",
]
