"""Typed errors. Every message names the problem and how to fix it."""
from __future__ import annotations


class VoxelDosimetryError(Exception):
    """Base class of every error this library raises on purpose."""


class GridMismatchError(VoxelDosimetryError, ValueError):
    """Two volumes that must share a voxel grid do not."""


class UnitError(VoxelDosimetryError, ValueError):
    """A quantity or unit is unknown, missing or incompatible."""


class QuantityMismatchError(UnitError):
    """A volume holds another quantity than the operation needs (`expected`; `found`: its quantity and unit).

    Raised by Volume.require_quantity; a command catches it to name its own fix (e.g. `dose` for counts).
    """

    def __init__(self, message: str, expected: tuple = (), found: tuple = ("unknown", "unknown")) -> None:
        super().__init__(message)
        self.expected = tuple(expected)
        self.found = tuple(found)


class InputFormatError(VoxelDosimetryError, ValueError):
    """A file or array cannot be read or is malformed."""


class MissingMetadataError(VoxelDosimetryError, KeyError):
    """Metadata needed for the requested operation is absent from the input."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class UnknownNuclideError(VoxelDosimetryError, KeyError):
    """A radionuclide name is not in the decay database."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
