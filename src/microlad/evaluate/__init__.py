"""Evaluation: descriptor reports of images and volumes, fidelity metrics, and the
``microlad evaluate`` comparison of volumes with a reference (metrics, verdict, report).

The heavy parts (matplotlib report, reference sampling) live in submodules:
:mod:`~microlad.evaluate.metrics`, :mod:`~microlad.evaluate.reference`,
:mod:`~microlad.evaluate.verdict`, :mod:`~microlad.evaluate.evaluation`,
:mod:`~microlad.evaluate.report`.
"""
from microlad.evaluate.evaluation import Evaluation, evaluate_volumes, format_verdict
from microlad.evaluate.fidelity import Fidelity, s2_fidelity
from microlad.evaluate.metrics import MetricOptions
from microlad.evaluate.properties import AXES_2D, AXES_3D, format_properties, properties
from microlad.evaluate.reference import Reference, reference_from_images, reference_from_model, reference_from_volume

__all__ = [
    "AXES_2D",
    "AXES_3D",
    "Evaluation",
    "Fidelity",
    "MetricOptions",
    "Reference",
    "evaluate_volumes",
    "format_properties",
    "format_verdict",
    "properties",
    "reference_from_images",
    "reference_from_model",
    "reference_from_volume",
    "s2_fidelity",
]
