"""Built-in ttsadapt plugins."""
