"""Readers of the places a CA keeps its certificates and the facts about them (DESIGN §4): one
module per kind, and `registry` that maps each kind to its reader."""
