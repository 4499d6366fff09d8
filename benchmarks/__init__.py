"""Load benchmarks: flaskprod's stacks against the guide's deployments and bare servers, on loopback."""
