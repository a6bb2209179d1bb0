"""Reading and writing volumes (NRRD, NIfTI, MHD/MHA, Interfile, DICOM) with geometry and units."""
