"""The inference engine: what the models compute, micro-batched, as traced graphs. Knows nothing of HTTP."""
