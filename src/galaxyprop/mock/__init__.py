"""The built-in mock DESI survey: galaxies, Legacy-Surveys-like images, DESI-like spectra, labels."""
