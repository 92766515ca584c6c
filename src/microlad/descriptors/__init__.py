"""Microstructure descriptors: pure functions of label arrays, no I/O.

numpy functions (this package) for reports and evaluation; differentiable torch
versions with the same definitions in :mod:`microlad.descriptors.torch` (imported on
demand, so this package does not import torch).

Conventions: volumes are (Z, Y, X) label arrays, 2-D images (Y, X), with integer phases
0..P-1; lengths are in voxels unless ``voxel_size`` is given; densities are per unit
TOTAL volume (area); nothing is periodic except the S2 default (``periodic=True``).
"""
from microlad.descriptors._clusters import SliceClusters, euler_characteristic_density, isolated_cluster_density, slice_clusters
from microlad.descriptors._percolation import Percolation, percolating_axes, percolation, spanning_pairs
from microlad.descriptors._perimeter import slice_perimeter_density, stereological_surface_area
from microlad.descriptors._s2 import s2_autocorrelation, s2_axis, s2_error, s2_radial, s2_slices
from microlad.descriptors._surface import SSA_METHODS, specific_surface_area
from microlad.descriptors._tpb import triple_phase_boundary_density
from microlad.descriptors._vf import volume_fraction

__all__ = [
    "volume_fraction",
    "s2_radial",
    "s2_axis",
    "s2_slices",
    "s2_error",
    "s2_autocorrelation",
    "specific_surface_area",
    "SSA_METHODS",
    "triple_phase_boundary_density",
    "percolation",
    "Percolation",
    "percolating_axes",
    "spanning_pairs",
    "slice_perimeter_density",
    "stereological_surface_area",
    "slice_clusters",
    "SliceClusters",
    "isolated_cluster_density",
    "euler_characteristic_density",
]
