"""The backend-neutral trainer: data sources (data.py), augmentations (augment.py) and the loop."""
