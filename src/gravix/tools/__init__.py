"""Tools around the core: a client that sends facts, a server process helper, synthetic
traffic and the demo."""
