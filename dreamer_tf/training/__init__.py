"""Training: the train loop, train ratio, checkpointing, logging and evaluation."""
