"""Data: manifests with validation, data cards, recipes, the offline corpus builder, importers."""

from .manifest import ManifestLoad, QuarantineEntry, load_clip_audio, load_manifest, write_manifest
from .recipes import PreparedData, Recipe, prepare_training_data

__all__ = [
    "ManifestLoad",
    "PreparedData",
    "QuarantineEntry",
    "Recipe",
    "load_clip_audio",
    "load_manifest",
    "prepare_training_data",
    "write_manifest",
]
