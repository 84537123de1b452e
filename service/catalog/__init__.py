"""The models being served: the checkpoints loaded and verified, and reloaded when they change."""
