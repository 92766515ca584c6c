"""Read segmented images / volumes, map grey values to phases, write volumes atomically.

Axis convention: 2D images are (Y, X); volumes are (Z, Y, X), axis 0 = z.
Phases are labelled 0..P-1 in ascending order of their original grey value.
"""
from microlad.io._read import MAX_PHASES, Segmented, check_patch_size, map_phases, read_image
from microlad.io._write import atomic_path, check_output_dir, check_output_file, write_json, write_volume

__all__ = [
    "MAX_PHASES",
    "Segmented",
    "atomic_path",
    "check_output_dir",
    "check_output_file",
    "check_patch_size",
    "map_phases",
    "read_image",
    "write_json",
    "write_volume",
]
