"""The npe2 hooks of the manifest (``napari.yaml``): reader, writer and sample data."""
