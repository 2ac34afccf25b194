"""File formats: safetensors (our own validating reader and atomic writer)."""
