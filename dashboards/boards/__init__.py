"""One module per board; each has `build(facts) -> Board`."""
