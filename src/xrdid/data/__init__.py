"""Stick tables as padded tensors, ready for batched rendering."""

from xrdid.data.sticks import StickTable

__all__ = ["StickTable"]
