"""Evaluation: descriptor reports of images and volumes, and fidelity metrics."""
from microlad.evaluate.fidelity import Fidelity, s2_fidelity
from microlad.evaluate.properties import AXES_2D, AXES_3D, format_properties, properties

__all__ = ["AXES_2D", "AXES_3D", "Fidelity", "format_properties", "properties", "s2_fidelity"]
