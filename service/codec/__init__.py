"""Wire formats in and out: request and answer schemas, images, .npy, the answer formats (JSON, PNG, .npy), errors."""
