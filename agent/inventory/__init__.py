"""One party's inventory: its sources collected and assembled (facts attached to records),
attributed to operators, and cut to a pairing's scope."""
