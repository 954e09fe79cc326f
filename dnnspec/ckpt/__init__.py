"""Checkpoints: the HDF5 format (`hdf5`), and tools over it."""

from .hdf5 import FORMAT_VERSION, Checkpoint, VarRecord, load, save

__all__ = ["Checkpoint", "VarRecord", "load", "save", "FORMAT_VERSION"]
