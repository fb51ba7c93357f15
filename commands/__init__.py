"""Commands that sit above both pretraining and fine-tuning (``bench-speed``)."""
