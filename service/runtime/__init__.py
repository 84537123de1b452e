"""The process: the bounded HTTP server and its signals, draining, the log writer, the metrics."""
