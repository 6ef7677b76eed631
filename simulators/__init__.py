"""Physics-based device simulators: the field devices a site gateway polls."""
