"""Text modality: alphabet, corpora, drafts, refiners and judges for character-level text."""
