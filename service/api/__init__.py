"""The HTTP API: the routes by group, what they are given, keys, errors, the OpenAPI document, the explorer."""
