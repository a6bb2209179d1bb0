"""How commands read their inputs: options only fill in what a file does not say, and a file declaring the wrong
kind of data for an option is refused (docs/RELIABILITY.md §9)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

_RELABEL_FIX = "voxeldosimetry convert {path} COPY.nrrd --relabel {options}"


def declared_labels(volume) -> tuple[str | None, str | None]:
    """(quantity, unit) the file itself states; None for what it leaves open.

    A file that states a quantity but no unit (e.g. a GATE dose file name, or an NRRD with only a quantity field)
    has its canonical unit assumed by the reader, which an option may still replace by a scaled unit of it.
    """
    if volume.quantity == "unknown":
        return None, None
    source = volume.metadata.get("source")
    unit_stated = source.get("unit_stated", True) if isinstance(source, dict) else True  # DICOM: from the tags
    return volume.quantity, (volume.unit if unit_stated else None)


def _same_unit(a: str, b: str) -> bool:
    from VoxelDosimetryLib.volume.units import canonical_unit

    return canonical_unit(a) == canonical_unit(b)


def read_input(path: str | Path, quantity: str | None = None, unit: str | None = None, *, option: str = "--unit",
               quantity_option: str = "--quantity", relabel: bool = False, fix: str | None = None, **options):
    """Read a volume; `quantity`/`unit` (from `quantity_option`/`option`) only fill in what the file does not say.

    A file that states its quantity or unit and an option that contradicts it raise UnitError naming what the
    file says and the fix (`fix`: the command's own remedy; default: drop the option, or relabel a copy with
    `voxeldosimetry convert --relabel`). Equal values are fine. relabel=True (convert --relabel) lets the
    options replace the file's declaration instead (voxel values unchanged; the change is recorded in the
    volume's metadata["source"]["notes"]).
    """
    from VoxelDosimetryLib.errors import UnitError
    from VoxelDosimetryLib.io import read_volume
    from VoxelDosimetryLib.io.sidecar import relabel as relabel_volume
    from VoxelDosimetryLib.volume.units import canonical_unit, check_unit_for_quantity, conversion_factor

    if relabel:
        return read_volume(path, quantity=quantity, unit=unit, **options)
    if unit is not None:
        try:
            canonical_unit(unit)
        except UnitError as exc:
            raise UnitError(f"{option} {unit}: {exc}") from None
    volume = read_volume(path, **options)
    file_quantity, file_unit = declared_labels(volume)
    problems = []
    if quantity is not None and file_quantity is not None and quantity != file_quantity:
        problems.append(f"{quantity_option} says {quantity}")
    if unit is not None and file_unit is not None and not _same_unit(unit, file_unit):
        scale = ""
        if canonical_unit(unit)[0] == canonical_unit(file_unit)[0]:
            factor = conversion_factor(unit, file_unit)
            scale = (f" (reading its values as {unit} would make them "
                     + (f"{1 / factor:g} times lower)" if factor < 1 else f"{factor:g} times higher)"))
        problems.append(f"{option} says {unit}{scale}")
    elif unit is not None and file_unit is None and file_quantity is not None and not problems:
        try:
            check_unit_for_quantity(file_quantity, unit)
        except UnitError:
            problems.append(f"{option} says {unit}, which is not a unit of {file_quantity}")
    if problems:
        used = [o for o, v in ((quantity_option, quantity), (option, unit)) if v is not None]
        relabel_options = " ".join(f"{o} {v}" for o, v in (("--quantity", quantity), ("--unit", unit)) if v)
        remedy = fix or (f"Drop {' and '.join(used)} (the file's own declaration is then used); if the declaration "
                         "is wrong, write a relabelled copy explicitly and give that instead: "
                         + _RELABEL_FIX.format(path=path, options=relabel_options))
        declared = f"{file_quantity} ({file_unit})" if file_unit else f"{file_quantity} (no unit stated)"
        raise UnitError(f"{path} declares {declared}, but {' and '.join(problems)}. Options only fill in what a "
                        f"file does not say; they never override what it declares. {remedy}.")
    fill_quantity = quantity if file_quantity is None else None
    fill_unit = unit if file_unit is None else None
    if fill_quantity is None and fill_unit is None:
        return volume
    return relabel_volume(volume, quantity=fill_quantity, unit=fill_unit)


def read_as(path: str | Path, quantities: Sequence[str], option: str, what: str, fix: str | None = None,
            **options):
    """Read the volume an option needs to hold one of `quantities` (io.roles.as_role: unlabelled files are taken
    as quantities[0], files declaring another quantity are refused)."""
    from VoxelDosimetryLib.io import read_volume
    from VoxelDosimetryLib.io.roles import as_role

    return as_role(read_volume(path, **options), path, quantities, option, what, fix)


def read_ct(path: str | Path, option: str = "--ct", **options):
    """A CT in HU (read_as): unlabelled files are taken as HU; files declaring another quantity are refused."""
    return read_as(path, ("ct",), option, "a CT in HU", **options)


def read_labels(path: str | Path, option: str = "--labels", **options):
    """A label map (read_as): unlabelled files are taken as labels; activity, dose, CT... files are refused."""
    return read_as(path, ("labels", "mask"), option, "a label map (integer segments, 0 = background)",
                   fix=f"Give the segmentation (e.g. a TotalSegmentator output or a Slicer .seg.nrrd) as {option}",
                   **options)
