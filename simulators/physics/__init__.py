"""Physical models, one per kind of equipment. Pure and deterministic: no I/O, no clock."""
