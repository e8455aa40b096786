"""Thin Ray Serve wrappers over the core classes: one deployment per module."""
