"""SDS-guided 3D generation: steer a volume toward target descriptors and properties while
the 2D diffusion prior keeps every slice realistic (MicroLad §6).

Entry point: :func:`generate` (``microlad generate`` on the command line). Modules:
``targets`` (syntax, validation), ``stats`` (the one accessor of training statistics),
``prior`` (SDS pseudo-gradient), ``surrogate`` (differentiable decoding), ``terms``
(values, losses, measurement on labels), ``balance`` (gradient balancing), ``loop``
(the optimisation), ``result`` (outputs), ``realism`` (VAE round-trip accuracy). The label
polish that ends S2-guided runs is :mod:`microlad.reconstruct.polish`.
"""
from microlad.guidance.loop import GuidanceOptions, generate, prepare
from microlad.guidance.prior import NoiseRange, sds_gradient
from microlad.guidance.realism import roundtrip_accuracy
from microlad.guidance.result import GuidanceResult, TermReport, log_csv
from microlad.guidance.stats import TrainingReference, training_reference
from microlad.guidance.targets import Target, parse_target, parse_targets, parse_weights, validate_targets

__all__ = [
    "GuidanceOptions",
    "GuidanceResult",
    "NoiseRange",
    "Target",
    "TermReport",
    "TrainingReference",
    "generate",
    "log_csv",
    "parse_target",
    "parse_targets",
    "parse_weights",
    "prepare",
    "roundtrip_accuracy",
    "sds_gradient",
    "training_reference",
    "validate_targets",
]
