"""Powder indexing: peak search, cells for all 14 Bravais lattices, extinction check and space-group ranking."""
