"""Tiny importable Flask apps that the discovery and serve tests load by import string."""
