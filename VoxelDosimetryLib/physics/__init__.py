"""Physics data: radionuclides (ICRP-107), HU to density and media (Schneider 2000)."""
