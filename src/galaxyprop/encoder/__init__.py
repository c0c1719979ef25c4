"""The contrastive image-spectrum encoder (AstroCLIP-style): its networks, the augmented image-spectrum
pairs it trains on, the spectra as it reads them, and the embedding of a whole dataset with it."""
