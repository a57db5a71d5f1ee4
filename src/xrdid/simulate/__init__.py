"""Stick patterns: per structure (``sticks``), per chunk of a structures table and merged (``chunks``)."""
