"""Fine-tune a metric-learning embedding head on cached backbone features."""
