"""Chat inference in its own process: `worker.py` runs the model, `client.py` talks to it."""
