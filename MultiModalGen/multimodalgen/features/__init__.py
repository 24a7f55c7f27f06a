"""Hand-crafted, modality-independent image descriptors (MIND-SSC). Light: nothing heavy is imported here."""
