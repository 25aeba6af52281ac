"""Built-in metrics: one module per metric, each an ordinary pluggy plugin."""
