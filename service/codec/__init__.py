"""Wire formats in and out: request schemas, images, .npy, JSON and PNG answers, the error envelope."""
